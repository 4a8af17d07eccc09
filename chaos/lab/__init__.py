"""The lab: a whole pfxha cluster on one machine (``pfxha lab up|status|down``)."""
