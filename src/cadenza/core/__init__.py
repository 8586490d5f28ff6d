"""The leaf of Cadenza: the vocabulary every layer shares and that depends on nothing else of
Cadenza's: ids, errors, events, run statuses and their transitions, the state schema and its
reducers, the context a step handler is given, and the clock. (A test walks the import graph
to keep it so.)"""
