import sys

from learning_pipeline.cli.main import main

sys.exit(main())
