import os
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The key customers' secrets are sealed with, for code run in this process and the hosts it
# starts (a fresh one per test session, as `make run` writes one per checkout).
os.environ.setdefault("SECRETS_ENCRYPTION_KEYS", Fernet.generate_key().decode())
