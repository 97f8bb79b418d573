"""The Playground as a web page: the server (``app.py``), one page's session and messages (``page.py``), the
command (``server.py``) and the page itself (``static/``)."""
