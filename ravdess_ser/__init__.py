"""Speech emotion recognition on RAVDESS, as plain functions over paths and arrays.

The DVC stage scripts under ``stages/`` are thin wrappers around this package;
everything here can be used and tested without DVC.
"""

import os

# oneDNN keeps a compiled primitive, with its buffers, for every input shape it has seen: by default up to 1024 of
# them. Every clip length is a new shape, so an embed stage's memory grew by about 25 MB per clip with
# wav2vec2-base (2.4 GB after 60 clips). A few entries are all one clip's forward pass reuses; measured peak RSS
# 1.4 GB, and no loss of speed. oneDNN reads this when torch first uses it, so it is set before any of our code can.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")
