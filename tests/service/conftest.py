"""Fixtures for the HTTP service tests (the fake engine lives in fake_engine.py)."""

from __future__ import annotations

import pytest
from fake_engine import FakeEngine, LiveServer, make_settings, wait_for
from fastapi.testclient import TestClient

from service.app import create_app


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def client_for():
    """client_for(engine, **settings) -> a TestClient (lifespan run) once the app is ready."""
    clients: list[TestClient] = []

    def make(engine: FakeEngine, wait_ready: bool = True, **settings) -> TestClient:
        app = create_app(make_settings(**settings), engine=engine)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        if wait_ready:
            wait_for(lambda: client.get("/health/ready").status_code == 200, what="ready")
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(client_for, engine) -> TestClient:
    return client_for(engine)


@pytest.fixture
def live_server():
    """live_server(engine, **settings) -> a started LiveServer (stopped after the test)."""
    servers: list[LiveServer] = []

    def make(engine: FakeEngine, **settings) -> LiveServer:
        server = LiveServer(create_app(make_settings(**settings), engine=engine)).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()
