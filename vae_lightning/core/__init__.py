"""The ground floor every other part stands on, with no knowledge of VAEs:

- `errors`: the exception classes (user errors, early stops of a run), nothing else;
- `checks`: the validation vocabulary (named checks with the words of the one-line error);
- `building`: making objects from a config's `_target_` (the only caller of Hydra's `instantiate`);
- `rng`: seeded randomness that leaves the global RNG alone;
- `files`: atomic writes;
- `progress`: progress bars for long loops;
- `console`: what a command shows on the console (its own lines, not the libraries' chatter).

Imports flow downward: commands -> cli -> the library (model, latent, data, callbacks, evaluation,
pictures, runs) -> core. Nothing in core imports from the rest of the package.
"""
