from portinspect.cli import main

main()
