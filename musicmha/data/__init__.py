"""MIDI in, tokens out: MIDI I/O, the tokenizer, the built-in corpus, preparation, token shards."""
