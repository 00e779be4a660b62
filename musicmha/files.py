"""The names of the files musicmha reads and writes, and nothing else: a leaf module (it imports nothing), so
every module that needs a name takes it from here without importing the module that owns the folder.

Each name means one file. The owners: `musicmha.checkpoint` (an inference checkpoint folder),
`musicmha.training.run_folder` (a training run folder), `musicmha.data.manifest` (a corpus or token folder's
manifest), `musicmha.data.split` (the split record beside a user's MIDI).
"""

# An inference checkpoint folder (musicmha.checkpoint)
CONFIG_FILE = "config.json"  # the ModelConfig of the weights beside it
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
TRAINING_FILE = "training.json"  # how an exported model was trained
CARD_FILE = "README.md"  # a shipped model's card
COPY_HEAD_FILE = "copy_head.json"  # the decoding-time copy head fitted to these weights (optional)
ADAPTER_CONFIG = "adapter.json"  # a LoRA adapter folder
ADAPTER_WEIGHTS = "adapter.safetensors"

# A training run folder (musicmha.training.run_folder)
TRAIN_CONFIG_FILE = "train_config.json"  # the resolved TrainConfig the folder was (last) run with
PROGRESS_FILE = "progress.json"  # the step and counters of a saved training state
RESUME_LOG_FILE = "resumes.jsonl"  # one line per resume that changed the curriculum (what, when)

# Data folders
MANIFEST_FILE = "manifest.json"  # a corpus folder's or a prepared token folder's manifest
SPLITS_FILE = "musicmha-splits.json"  # every MIDI file's split, kept in the user's MIDI folder
