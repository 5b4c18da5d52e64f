/*
 * pgbg_messages: keep the WARNING, NOTICE and INFO messages a pgbg job emits.
 *
 * A pgbg supervisor reads a job's outcome through pg_background, which re-raises the job's
 * messages in the reading backend (ThrowErrorData). PL/pgSQL cannot catch anything below
 * ERROR, so this module's emit_log_hook copies them, while capturing is on in this backend,
 * into a buffer of this backend (bounded in count and bytes). The server log gets what it
 * would get without this module: a message goes there only when the log_min_messages in force
 * before capturing says so (a role calling these functions in its own session can neither hide
 * its WARNINGs from the log nor add its NOTICEs to it).
 *
 *   pgbg._messages_begin(max_count int, max_bytes int) RETURNS void
 *       start capturing in this backend until _messages_take() or the end of the
 *       transaction; log_min_messages is lowered to INFO for the transaction (SET LOCAL),
 *       since PostgreSQL calls emit_log_hook only for messages bound for the server log
 *   pgbg._messages_take() RETURNS jsonb
 *       stop, and return {"messages": [{severity, sqlstate, message, detail, hint}, ...],
 *       "dropped": n}, or NULL when nothing was begun in this backend
 *
 * Bounds: max_count is clamped to 1..10000 and max_bytes to 1 kB..1 MB (the JSON text of
 * the kept messages); a message, detail or hint longer than 4 kB is cut there and marked
 * "truncated": true; a message that does not fit is counted in "dropped". Only the calling
 * backend is affected; nothing is shared.
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

#define FIELD_MAX 4096

PG_FUNCTION_INFO_V1(pgbg_messages_begin);
PG_FUNCTION_INFO_V1(pgbg_messages_take);

void		_PG_init(void);

static emit_log_hook_type prev_emit_log_hook = NULL;

static bool capturing = false;
static char *buf = NULL;		/* entries, comma separated; in TopMemoryContext */
static int	buf_size = 0;
static int	buf_len = 0;
static int	kept = 0;
static int	max_count = 0;
static int64 dropped = 0;
static char *saved_level = NULL;	/* log_min_messages before begin lowered it */
static int	saved_min = -1;		/* the same, as a level; -1: not lowered */

/* Append s (len bytes) at *pos, escaped as a JSON string body; false when it does not fit. */
static bool
put_json_string(int *pos, const char *s, int len)
{
	int			i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];
		char		esc[8];
		int			n = 0;

		switch (c)
		{
			case '"':
				esc[n++] = '\\';
				esc[n++] = '"';
				break;
			case '\\':
				esc[n++] = '\\';
				esc[n++] = '\\';
				break;
			case '\n':
				esc[n++] = '\\';
				esc[n++] = 'n';
				break;
			case '\r':
				esc[n++] = '\\';
				esc[n++] = 'r';
				break;
			case '\t':
				esc[n++] = '\\';
				esc[n++] = 't';
				break;
			default:
				if (c < 0x20)
					n = snprintf(esc, sizeof(esc), "\\u%04x", c);
				else
					esc[n++] = (char) c;
		}
		if (*pos + n > buf_size)
			return false;
		memcpy(buf + *pos, esc, n);
		*pos += n;
	}
	return true;
}

static bool
put_raw(int *pos, const char *s)
{
	int			n = strlen(s);

	if (*pos + n > buf_size)
		return false;
	memcpy(buf + *pos, s, n);
	*pos += n;
	return true;
}

/* "name": "value" (or null), the value cut at FIELD_MAX bytes on a character boundary. */
static bool
put_field(int *pos, const char *name, const char *value, bool *cut)
{
	int			len;

	if (!put_raw(pos, ", \"") || !put_raw(pos, name) || !put_raw(pos, "\": "))
		return false;
	if (value == NULL)
		return put_raw(pos, "null");
	len = strlen(value);
	if (len > FIELD_MAX)
	{
		len = pg_mbcliplen(value, len, FIELD_MAX);
		*cut = true;
	}
	return put_raw(pos, "\"") && put_json_string(pos, value, len) && put_raw(pos, "\"");
}

static const char *
severity(int elevel)
{
	if (elevel == INFO)
		return "INFO";
	if (elevel == NOTICE)
		return "NOTICE";
	return "WARNING";
}

static void
keep(ErrorData *edata)
{
	int			pos = buf_len;
	bool		cut = false;
	bool		ok;

	if (kept >= max_count)
	{
		dropped++;
		return;
	}
	ok = (pos == 0 || put_raw(&pos, ", "))
		&& put_raw(&pos, "{\"severity\": \"")
		&& put_raw(&pos, severity(edata->elevel))
		&& put_raw(&pos, "\", \"sqlstate\": \"")
		&& put_raw(&pos, unpack_sql_state(edata->sqlerrcode))
		&& put_raw(&pos, "\"")
		&& put_field(&pos, "message", edata->message, &cut)
		&& put_field(&pos, "detail", edata->detail, &cut)
		&& put_field(&pos, "hint", edata->hint, &cut)
		&& put_raw(&pos, cut ? ", \"truncated\": true}" : "}");
	if (ok)
	{
		buf_len = pos;
		kept++;
	}
	else
		dropped++;
}

static void
pgbg_emit_log_hook(ErrorData *edata)
{
	if (capturing && buf != NULL && edata->elevel >= INFO && edata->elevel <= WARNING)
	{
		keep(edata);
		/*
		 * To the server log only as the setting before begin() would have sent it there
		 * (elog.c's is_log_level_output, for INFO..WARNING: at "log" none, else from the level
		 * up). Not to the client: for a supervisor that is a queue nobody reads.
		 */
		if (saved_min >= 0)
			edata->output_to_server = saved_min != LOG && saved_min != LOG_SERVER_ONLY &&
				edata->elevel >= saved_min;
		edata->output_to_client = false;
		if (!edata->output_to_server)
			return;
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

static void
pgbg_messages_xact(XactEvent event, void *arg)
{
	/*
	 * capturing lasts one transaction at most, like the SET LOCAL of log_min_messages; the
	 * level remembered is forgotten with it (a later take() must not set a stale one)
	 */
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			capturing = false;
			if (saved_level != NULL)
				pfree(saved_level);
			saved_level = NULL;
			saved_min = -1;
			break;
		default:
			break;
	}
}

void
_PG_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = pgbg_emit_log_hook;
	RegisterXactCallback(pgbg_messages_xact, NULL);
}

static void
discard(void)
{
	capturing = false;
	if (saved_level != NULL)
	{
		/* back to what it was (SET LOCAL: the end of the transaction would do it too) */
		(void) set_config_option("log_min_messages", saved_level, PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
		pfree(saved_level);
		saved_level = NULL;
	}
	saved_min = -1;
	if (buf != NULL)
		pfree(buf);
	buf = NULL;
	buf_size = buf_len = kept = 0;
	dropped = 0;
}

Datum
pgbg_messages_begin(PG_FUNCTION_ARGS)
{
	int			count = PG_ARGISNULL(0) ? 100 : PG_GETARG_INT32(0);
	int			bytes = PG_ARGISNULL(1) ? 65536 : PG_GETARG_INT32(1);

	discard();
	max_count = Min(Max(count, 1), 10000);
	buf_size = Min(Max(bytes, 1024), 1024 * 1024);
	buf = MemoryContextAlloc(TopMemoryContext, buf_size + 1);
	/*
	 * emit_log_hook sees only what goes to the server log: INFO and NOTICE must be bound for
	 * it while capturing (the hook then logs only what the setting before would). For this
	 * transaction only.
	 */
	if (log_min_messages >= LOG)
	{
		saved_level = MemoryContextStrdup(TopMemoryContext,
										  GetConfigOption("log_min_messages", false, false));
		saved_min = log_min_messages;
		(void) set_config_option("log_min_messages", "info", PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	}
	capturing = true;
	PG_RETURN_VOID();
}

Datum
pgbg_messages_take(PG_FUNCTION_ARGS)
{
	StringInfoData out;
	Datum		result;

	if (buf == NULL)
	{
		capturing = false;
		PG_RETURN_NULL();
	}
	capturing = false;
	initStringInfo(&out);
	appendStringInfoString(&out, "{\"messages\": [");
	appendBinaryStringInfo(&out, buf, buf_len);
	appendStringInfo(&out, "], \"dropped\": " INT64_FORMAT "}", dropped);
	discard();
	result = DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data));
	pfree(out.data);
	PG_RETURN_DATUM(result);
}
