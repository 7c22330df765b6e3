"""The predicates that decide the write-up's sentences on a tables dict, by kind of sentence."""
