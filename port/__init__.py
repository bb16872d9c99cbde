"""Caffe's formats and semantics: schema, text and binary I/O, upgrades, layers, the interpreter."""
