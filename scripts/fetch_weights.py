import sys
from nst_jax.fetch import main
sys.exit(main())
