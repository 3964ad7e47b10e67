from regplan.cli import main

main()
