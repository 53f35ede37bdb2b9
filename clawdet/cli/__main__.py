from clawdet.cli import main

main()
