"""The stand-in cloud certificate service (the Intune side of the seed's flow).

    from chaos.service import ServiceConfig, create_app
    app = create_app(ServiceConfig(db_path=Path("run/service.db")))

Run it with ``pfxha service run --db FILE --listen HOST:PORT``; launch it from
Python with :mod:`chaos.launch.service`. API reference: docs/service.md.
"""

from chaos.service.app import ServiceConfig, create_app

__all__ = ["ServiceConfig", "create_app"]
