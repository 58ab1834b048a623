from pushbutton.cli.main import main

main()
