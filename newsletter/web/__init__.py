"""`newsletter serve`: the ASGI app (app), its handlers by concern, guards, pages, stores."""
