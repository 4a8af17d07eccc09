"""``python -m chaos.service --db FILE --listen HOST:PORT`` (same as ``pfxha service run``)."""

from chaos.service.cli import run

if __name__ == "__main__":
    run(prog_name="python -m chaos.service")
