"""Pure decisions: no I/O, no asyncio. Time and randomness are passed in.

Everything here is tested with plain numbers; the policies in `tether.policies` do the waiting
and the sending.
"""
