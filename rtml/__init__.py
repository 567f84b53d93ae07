"""rtml: a real-time ML system on Apache Kafka (card-fraud detection), built as a course."""

import warnings

# confluent-kafka's registry client imports authlib's httpx integration, which warns about
# its own rename on every start; not ours to fix, and it buries rtml's output. authlib
# sets its warnings to "always" when its deprecate module loads, so load it first.
import authlib.deprecate  # noqa: F401

warnings.filterwarnings("ignore", message="The httpx module is deprecated")

__version__ = "0.1.0"
