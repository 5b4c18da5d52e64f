from pgbg_cli.cli import main

main()
