"""`kinema serve`: the OpenAI-compatible video jobs API, durable SQLite jobs, worker processes, web studio.

    from kinema.server import ServerConfig, create_app
    app = create_app(ServerConfig(data_dir=Path("runs/serve")))   # an ASGI app; uvicorn runs it

app.py holds the routes and limits, jobs.py the database, worker.py the generation workers, auth.py keys and
token buckets, static/index.html the studio.
"""

from kinema.server.app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
