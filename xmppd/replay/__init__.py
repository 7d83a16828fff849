"""Session traces and replays: turn a captured log into a regression test of the c2s machine."""
