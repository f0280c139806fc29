"""Item content, safe image decoding and the encoder-state cache (dataset / dataloader modules follow)."""

from recbole_pmmrec.data.cache import CachedStates, EncoderStateCache, image_state_cache, text_state_cache
from recbole_pmmrec.data.content import ItemContent, read_item_text
from recbole_pmmrec.data.images import index_image_dir, load_image, probe_image, resolve_image_path
from recbole_pmmrec.data.dataloader import PMMRecTrainDataLoader, next_item_window
from recbole_pmmrec.data.features import ItemFeatures
from recbole_pmmrec.data.dataset import PMMRecDataset
