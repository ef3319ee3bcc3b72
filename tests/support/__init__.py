"""Test support shared by the live and fault-injection suites.

- ``paths``: the repository and the real data beside it (``../shared``).
- ``process``: run ``streamd`` as a subprocess with a time limit; capture stdout, stderr, exit code, memory.
- ``checkpoints``: small seeded random-weight checkpoints with the ESC-50 labels.
- ``virtual_mic``: a PulseAudio virtual microphone (``scripts/virtual_mic.sh``) fed at real-time pace.
- ``bad_files``: a generated catalogue of bad, odd and valid audio files with their expected outcome.
- ``faults``: sources and models that fail or stall on purpose, for driving the daemon directly.
- ``fixtures``: the pytest fixtures built on the above (imported by the suites' conftest files).
"""
