from clawdet.settings import Settings
from db.engine import Database
from webapp import create_app


def test_health_is_503_when_the_database_is_down(tmp_path):
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    settings = Settings.from_env(
        {"CLAWDET_DATA_DIR": str(tmp_path), "DATABASE_URL": url, "SECRET_KEY": "k"}, dotenv=False
    )
    app = create_app(settings, Database(url))
    response = app.test_client().get("/api/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "down" and body["checks"]["database"]["ok"] is False
    assert "nobody" not in response.get_data(as_text=True)  # no connection details leak
