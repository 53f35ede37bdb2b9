from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user

bp = Blueprint("pages", __name__)


@bp.get("/")
def home():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.show"))
    return render_template("home.html")


@bp.get("/terms")
def terms():
    return render_template("terms.html")
