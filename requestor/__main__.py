from requestor.cli.main import main

main()
