from portinspect._entry import main

main()
