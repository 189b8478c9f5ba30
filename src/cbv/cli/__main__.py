from cbv.cli.main import cli

cli()
