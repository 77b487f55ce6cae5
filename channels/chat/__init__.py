"""Site chat: the widget on the shop's own pages (``static/widget.js``) as one more channel.

The pure parts live here (``visitor``: tokens, origins, what a request may carry, the hours
line; ``hub``: waking the panels' long polls); ``send`` is the channel that delivers a reply
to the panel, or by email to a visitor who has gone. The HTTP edge is ``responder/web/chat_api.py``.
"""
