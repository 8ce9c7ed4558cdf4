"""The dashboard in a real browser: Debian's chromium, driven by playwright, against the module's in-process pool
(`cli_pool`, as `hamr pool up` builds it). A tenant logs in with its token, sees the devices, submits a job from the
page and watches it succeed, and sees none of another tenant's rows; the admin sees both tenants and the nodes.

Screenshots are kept under pytest's tmp dir, and copied to $HAMR_ARTEFACTS when it is set. Without /usr/bin/chromium
or playwright the tests skip, naming what to install.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.helpers import bearer, infer_mlp, mlp_reference, npy

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FINISH_MS = 60_000  # a job's worker starts, loads the executable and runs it
SEE_MS = 15_000  # the page polls every 2 s; CI runs two test processes on two cores


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: install Debian's chromium with .ci/chromium.sh")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]' (the browser itself: .ci/chromium.sh)")
    expect.set_options(timeout=SEE_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def tenants(cli_pool, exe_bytes):
    """Two tenants, acme and globex, each with the MLP uploaded and a job submitted; globex also with a deployment.
    name -> {"id", "token", "exe", "job"} (globex's also "deployment"); plus "admin" (its token) and "url"."""
    root, env, url = cli_pool
    admin = (root / "admin.token").read_text().strip()
    made = {"admin": admin, "url": url}
    with httpx.Client(base_url=url, timeout=60) as client:
        for name in ("acme", "globex"):
            created = client.post("/v1/tenants", json={"name": name}, headers=bearer(admin))
            assert created.status_code == 201, created.text
            token = created.json()["token"]
            exe = client.post(
                "/v1/executables", params={"name": f"{name}-mlp"}, content=exe_bytes, headers=bearer(token)
            )
            assert exe.status_code == 201, exe.text
            job = client.post(
                "/v1/jobs",
                data={"executable_id": str(exe.json()["id"])},
                files={"x": ("x.npy", npy(np.ones((2, 16), np.float32)))},
                headers=bearer(token),
            )
            assert job.status_code == 201, job.text
            made[name] = {"id": created.json()["tenant"]["id"], "token": token, "exe": exe.json()["id"]}
            made[name]["job"] = job.json()["id"]
        globex = made["globex"]
        deployment = client.post(
            "/v1/deployments",
            json={"executable_id": globex["exe"], "name": "globex-mlp"},
            headers=bearer(globex["token"]),
        )
        assert deployment.status_code == 201, deployment.text
        globex["deployment"] = deployment.json()["id"]
    return made


def log_in(browser, url: str, token: str):
    """A fresh browser context (its own sessionStorage) logged in with `token`; (page, the URLs it requested
    with the Authorization header each carried, the script's uncaught errors)."""
    page = browser.new_context().new_page()
    requests: list[tuple[str, str | None]] = []
    errors: list = []
    page.on("request", lambda r: requests.append((r.url, r.headers.get("authorization"))))
    page.on("pageerror", lambda error: errors.append(error))
    page.goto(url + "/")
    page.fill("#token", token)
    page.click("#login-form button")
    return page, requests, errors


def keep_screenshot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    kept = [path]
    if os.environ.get("HAMR_ARTEFACTS"):
        folder = Path(os.environ["HAMR_ARTEFACTS"])
        folder.mkdir(parents=True, exist_ok=True)
        kept.append(Path(shutil.copy(path, folder / name)))
    print("dashboard screenshot:", *kept)


def test_a_tenant_submits_a_job_from_the_page_and_sees_only_its_own_rows(browser, tenants, tmp_path):
    from playwright.sync_api import expect

    acme, globex, url = tenants["acme"], tenants["globex"], tenants["url"]
    page, requests, errors = log_in(browser, url, acme["token"])
    expect(page.locator("#who")).to_have_text("tenant acme")
    expect(page.locator("#devices tbody tr[data-uuid]").first).to_contain_text("cpu")
    expect(page.locator("#devices svg.plot").first).to_be_visible()

    x = np.random.default_rng(5).standard_normal((3, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    page.select_option("#executable", str(acme["exe"]))
    page.set_input_files("#inputs", str(tmp_path / "x.npy"))
    page.click("#submit-form button")
    result = page.locator("#submit-result")
    expect(result).to_have_text(re.compile(r"^job \d+ submitted$"))
    job = int(result.get_attribute("data-job-id"))
    row = page.locator(f'#jobs tr[data-job-id="{job}"]')
    expect(row.locator(".state")).to_have_text("succeeded", timeout=FINISH_MS)
    expect(row.locator(".attempts")).to_have_text("1")
    expect(row).to_contain_text("attempt 1 on")
    output = httpx.get(f"{url}/v1/jobs/{job}/outputs/y", headers=bearer(acme["token"]))
    np.testing.assert_allclose(np.load(io.BytesIO(output.content)), mlp_reference(x), rtol=1e-4, atol=1e-5)

    # none of globex's rows: jobs, executables, deployments; no nodes
    assert {
        int(t) for t in page.locator("#jobs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.tenantId)")
    } == {acme["id"]}
    expect(page.locator(f'#jobs tr[data-job-id="{globex["job"]}"]')).to_have_count(0)
    options = page.locator("#executable option").evaluate_all("os => os.map(o => o.value)")
    assert options == [str(acme["exe"])]
    expect(page.locator(f'#deployments tr[data-deployment-id="{globex["deployment"]}"]')).to_have_count(0)
    expect(page.locator("#nodes-section")).to_be_hidden()

    # one clear line for a refused submission: a priority above the tenant's max_priority
    page.fill("#priority", "5")
    page.click("#submit-form button")
    expect(result).to_have_text(re.compile(r"^not submitted: tenant acme may ask for priority up to 0"))
    keep_screenshot(page, tmp_path, "dashboard-tenant.png")

    # the token stays in the tab (a reload keeps the session), and never in a URL
    page.reload()
    expect(page.locator("#board")).to_be_visible()
    expect(page.locator(f'#jobs tr[data-job-id="{job}"]')).to_have_count(1)
    expect(page.locator(f'#jobs tr[data-job-id="{acme["job"]}"]')).to_have_count(1)
    assert all(acme["token"] not in u for u, _ in requests) and acme["token"] not in page.url
    api_calls = [(u, auth) for u, auth in requests if "/v1/" in u]
    assert api_calls and all(auth == f"Bearer {acme['token']}" for _, auth in api_calls)
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert errors == []
    page.context.close()


def test_the_admin_sees_every_tenant_the_nodes_and_request_rates(browser, tenants, tmp_path):
    from playwright.sync_api import expect

    acme, globex, url = tenants["acme"], tenants["globex"], tenants["url"]
    page, _, errors = log_in(browser, url, tenants["admin"])
    expect(page.locator("#who")).to_have_text("admin")
    expect(page.locator(f'#jobs tr[data-job-id="{globex["job"]}"]')).to_contain_text("globex")
    expect(page.locator(f'#jobs tr[data-job-id="{acme["job"]}"]')).to_contain_text("acme")
    nodes = page.locator("#nodes tbody tr[data-node]")
    expect(nodes.first.locator(".stranded")).to_have_text(re.compile(r"^\d\.\d{3} devices$"))
    expect(nodes.first.locator(".fragment")).to_have_text(re.compile(r"^\d\.\d{3} devices$"))
    expect(page.locator("#devices tbody tr[data-uuid]").first).to_contain_text("cpu")

    deployment = page.locator(f'#deployments tr[data-deployment-id="{globex["deployment"]}"]')
    expect(deployment).to_contain_text("globex-mlp")
    expect(deployment).to_contain_text("1 / 1", timeout=FINISH_MS)  # its replica loaded
    stop, failed = threading.Event(), []

    def requests():
        try:
            with httpx.Client(base_url=url, headers=bearer(globex["token"]), timeout=30) as client:
                seed = 0
                while not stop.is_set():
                    infer_mlp(client, globex["deployment"], seed)
                    seed += 1
        except Exception as exc:  # noqa: BLE001 - said below
            failed.append(exc)

    sender = threading.Thread(target=requests, daemon=True)
    sender.start()
    try:
        expect(deployment.locator(".value")).to_have_text(re.compile(r"^(?!0\.0/s)\d+\.\d/s$"))
    finally:
        stop.set()
        sender.join(30)
        assert not failed, failed
    keep_screenshot(page, tmp_path, "dashboard-admin.png")
    assert errors == []
    page.context.close()


def test_a_bad_token_is_refused_on_the_page_and_by_the_api(browser, tenants):
    from playwright.sync_api import expect

    page, _, errors = log_in(browser, tenants["url"], "hamr_not-a-token")
    expect(page.locator("#login-error")).to_have_text("cannot log in: invalid or revoked token")
    expect(page.locator("#board")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0 and errors == []
    page.context.close()
    answer = httpx.get(tenants["url"] + "/v1/dashboard")
    assert answer.status_code == 401 and answer.json() == {
        "detail": "missing bearer token (Authorization: Bearer hamr_...)"
    }
