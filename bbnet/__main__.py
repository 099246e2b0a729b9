from bbnet.cli import main

main()
