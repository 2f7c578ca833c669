"""REST front end: TF Serving's HTTP/JSON API on aiohttp."""
