"""What both the daemon (``streamd``) and ``training`` stand on: reading audio, the fbank, window plans,
padding of short audio, and turning a batch of features into class scores.

Pure modules: no threads, sockets or devices. Imports ``models`` only, never ``streamd`` or ``training``.
"""
