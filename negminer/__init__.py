"""negminer: hard-negative mining with false-negative filtering, and retrieval training on mined negatives.

The public API is what ``__all__`` lists here and in the subpackages ``negminer.index``, ``negminer.mining``,
``negminer.trainer`` and ``negminer.service``; modules whose names start with an underscore are private to their
package (the layers and what each may import: docs/architecture.md).
"""

from negminer._data import RetrievalData, from_hf_dataset, load_beir, load_corpus, load_data, load_pairs
from negminer._demo import build_demo
from negminer._errors import ConfigError, DataError, IndexFileError, ModelError, NegminerError, NonFiniteError
from negminer.index import Encoder
from negminer.mining import MiningConfig, MiningResult, mine

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "Encoder",
    "IndexFileError",
    "MiningConfig",
    "MiningResult",
    "ModelError",
    "NegminerError",
    "NonFiniteError",
    "RetrievalData",
    "__version__",
    "build_demo",
    "from_hf_dataset",
    "load_beir",
    "load_corpus",
    "load_data",
    "load_pairs",
    "mine",
]
