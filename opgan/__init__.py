"""opgan: blind restoration of real-world audio with 1D Operational GANs (trainer, restore, evaluate).

Importing this package stays light: the tools and subpackages load when used.
"""

from selfonn._version import __version__
