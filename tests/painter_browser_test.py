"""The painter page in a real headless browser (Debian chromium + chromedriver through selenium).

Paints with the mouse, waits for the synthesized image, and checks it changed where the paint went; also the
label-map files, undo, seeds and the page of a model without style input.
"""

import base64
import io
import json
import os
import shutil
import tempfile
import time

import numpy as np
import pytest
from PIL import Image

from spade_tf.serving import server as serve
from tests.serve_test import CLASS_NAMES, SIZE, running, served_model

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    # Without these chromium keeps trying to reach Google's services, which floods a closed network.
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
)
WAIT_S = 30
ZOOM = 16  # the page shows a 32 px label map at 512 CSS pixels
TREE, WATER, SKY = CLASS_NAMES.index("tree"), CLASS_NAMES.index("water"), CLASS_NAMES.index("sky")
DONTCARE = len(CLASS_NAMES)


def _browser_missing():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: the painter test needs Debian's chromium and its driver. "
            "Install them with: sudo apt-get install -y chromium chromium-driver",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running(
        serve.SpadeHTTPServer(("127.0.0.1", 0), served_model(tmp_path_factory, use_vae=True))
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def driver():
    _browser_missing()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="spade-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    # An explicit driver path: selenium then never tries to download one.
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_script_timeout(WAIT_S)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, script, what):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if driver.execute_script(script):
            return
        time.sleep(0.05)
    status = driver.execute_script("return document.getElementById('status').textContent")
    pytest.fail(f"timed out waiting for {what}; the page's status line says: {status!r}")


def wait_idle(driver, shown_after=0):
    """Until no prediction is pending and a newer image than `shown_after` is shown."""
    wait_for(
        driver,
        f"return window.painter && window.painter.idle() && window.painter.shown > {shown_after}",
        "the synthesized image",
    )
    return driver.execute_script("return window.painter.shown")


def open_page(driver, url):
    driver.get(url)
    wait_for(driver, "return window.painter && window.painter.ready", "the page to load the model's metadata")


def result_image(driver):
    """The synthesized image's exact pixels, decoded from its data: URL."""
    src = driver.find_element("id", "result").get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"), np.int16)


def label_ids(driver):
    return np.array(driver.execute_script("return window.painter.ids()"), np.int64).reshape(SIZE, SIZE)


def canvas_pixels(driver):
    data = driver.execute_script(
        "const c = document.getElementById('label-canvas');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);"
    )
    return np.array(data, np.uint8).reshape(SIZE, SIZE, 4)


def click(driver, selector):
    driver.find_element("css selector", selector).click()


def drag(driver, points):
    """Presses at the first label pixel, moves through the others and releases (CSS offsets from the centre)."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "label-canvas")

    def offset(x, y):
        return round((x + 0.5) * ZOOM - SIZE * ZOOM / 2), round((y + 0.5) * ZOOM - SIZE * ZOOM / 2)

    chain = ActionChains(driver).move_to_element_with_offset(canvas, *offset(*points[0])).click_and_hold()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        dx, dy = np.subtract(offset(x1, y1), offset(x0, y0))
        chain = chain.move_by_offset(int(dx), int(dy))
    chain.release().perform()


def upload(driver, input_id, path):
    driver.find_element("id", input_id).send_keys(str(path))


def save_screenshot(driver, tmp_path, name):
    path = tmp_path / name
    driver.save_screenshot(str(path))
    extra = os.environ.get("SPADE_TF_SCREENSHOT_DIR")
    if extra:
        os.makedirs(extra, exist_ok=True)
        shutil.copy(path, os.path.join(extra, name))
    assert path.stat().st_size > 10_000  # a real rendering, not an empty page


def test_painting_two_classes_changes_the_image_where_painted(server, driver, tmp_path):
    open_page(driver, server.url + "/")
    shown = wait_idle(driver)
    # The page lists every class by name with its palette colour, brush sizes and, for this VAE model, a seed.
    buttons = driver.find_elements("css selector", "#palette button.class")
    assert [b.text for b in buttons] == [*CLASS_NAMES, "dontcare"]
    assert [b.text for b in driver.find_elements("css selector", "#brush-sizes button")] == [
        "1",
        "2",
        "4",
        "8",
        "16",
    ]
    assert driver.find_element("id", "seed").is_displayed()
    assert driver.find_element("id", "upload-style").get_attribute("accept").startswith("image/png")
    # The label map and the synthesized image sit side by side at the same zoomed-up size.
    canvas_box = driver.find_element("id", "label-canvas").rect
    image_box = driver.find_element("id", "result").rect
    assert canvas_box["width"] == image_box["width"] >= SIZE * ZOOM
    assert image_box["x"] > canvas_box["x"] + canvas_box["width"] and image_box["y"] == canvas_box["y"]

    # Start from an all-sky map with the fill tool (a model with don't care starts unlabelled).
    assert (label_ids(driver) == DONTCARE).all()
    click(driver, f'#palette button[data-id="{SKY}"]')
    click(driver, '#tool-buttons button[data-tool="fill"]')
    drag(driver, [(20, 20)])
    shown = wait_idle(driver, shown)
    assert (label_ids(driver) == SKY).all()
    before = result_image(driver)

    click(driver, '#tool-buttons button[data-tool="brush"]')
    click(driver, f'#palette button[data-id="{TREE}"]')
    drag(driver, [(4, 5), (9, 5), (13, 6)])
    click(driver, f'#palette button[data-id="{WATER}"]')
    drag(driver, [(4, 13), (13, 13)])
    wait_idle(driver, shown)
    ids = label_ids(driver)
    assert ids[5, 4] == ids[5, 9] == ids[6, 13] == TREE and ids[13, 4] == ids[13, 13] == WATER
    assert set(np.unique(ids)) == {SKY, TREE, WATER}
    # The canvas shows the exact palette colour of every id: no antialiasing at the stroke edges.
    palette = np.array(server.servable.spade_metadata["model"]["palette"], np.uint8)
    pixels = canvas_pixels(driver)
    np.testing.assert_array_equal(pixels[..., :3], palette[ids])
    assert (pixels[..., 3] == 255).all()

    after = result_image(driver)
    change = np.abs(after - before).mean(axis=-1)
    painted = ids != SKY
    # "Far" pixels are 10+ label pixels (Chebyshev) from any paint. The random-weight generator spreads a
    # change over its receptive field (its coarse layers see the whole 32 px map), so far pixels change
    # too, but less: require the painted region's mean change to be twice the far one and over 10 grey
    # levels. Measured here: about 21 inside and 4 far.
    rows, cols = np.nonzero(painted)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    distance = np.min(np.maximum(np.abs(yy[..., None] - rows), np.abs(xx[..., None] - cols)), axis=-1)
    far = distance >= 10
    assert far.sum() > 200 and painted.sum() > 60
    inside_change, far_change = change[painted].mean(), change[far].mean()
    print(f"mean |change| inside the strokes {inside_change:.1f}, far from them {far_change:.1f}")
    assert inside_change > 10 and inside_change > 2 * far_change, (inside_change, far_change)
    save_screenshot(driver, tmp_path, "painter.png")


def test_undo_redo_seeds_and_style_image(server, driver, tmp_path):
    open_page(driver, server.url + "/")
    shown = wait_idle(driver)
    click(driver, f'#palette button[data-id="{SKY}"]')
    click(driver, '#tool-buttons button[data-tool="fill"]')
    drag(driver, [(1, 1)])
    click(driver, '#tool-buttons button[data-tool="brush"]')
    click(driver, f'#palette button[data-id="{TREE}"]')
    drag(driver, [(10, 10), (20, 10)])
    drag(driver, [(10, 20), (20, 20)])
    shown = wait_idle(driver, shown)
    painted = label_ids(driver)
    click(driver, "#undo")
    click(driver, "#undo")
    assert (label_ids(driver) == SKY).all()
    click(driver, "#redo")
    assert (label_ids(driver) != SKY).sum() and (label_ids(driver) != painted).sum()
    click(driver, "#redo")
    np.testing.assert_array_equal(label_ids(driver), painted)
    shown = wait_idle(driver, shown)
    # Another seed: another style, the same layout.
    first = result_image(driver)
    seed = driver.find_element("id", "seed")
    seed.clear()
    seed.send_keys("12345\n")
    shown = wait_idle(driver, shown)
    assert np.abs(result_image(driver) - first).mean() > 1
    click(driver, "#random-seed")
    shown = wait_idle(driver, shown)
    assert driver.find_element("id", "seed").get_attribute("value") != "12345"
    # A style image switches to the style_png signature; removing it switches back.
    seeded = result_image(driver)
    style = np.random.default_rng(2).integers(0, 256, (40, 60, 3), np.uint8)
    Image.fromarray(style).save(tmp_path / "style.png")
    upload(driver, "upload-style", tmp_path / "style.png")
    shown = wait_idle(driver, shown)
    assert driver.find_element("id", "status").text.startswith("style_png:")
    assert driver.find_element("id", "style-thumb").is_displayed()
    assert np.abs(result_image(driver) - seeded).mean() > 1
    click(driver, "#clear-style")
    wait_idle(driver, shown)
    assert driver.find_element("id", "status").text.startswith("predict_png:")
    np.testing.assert_array_equal(result_image(driver), seeded)


def test_label_png_download_and_upload(server, driver, tmp_path):
    open_page(driver, server.url + "/")
    wait_idle(driver)
    click(driver, f'#palette button[data-id="{WATER}"]')
    drag(driver, [(3, 3), (25, 25)])
    ids = label_ids(driver)
    assert {DONTCARE, WATER} == set(np.unique(ids))
    # The download is an 8-bit grayscale PNG of ids with don't care as 255: a label map train.py reads.
    data = base64.b64decode(driver.execute_script("return window.painter.idPngBase64()"))
    downloaded = Image.open(io.BytesIO(data))
    assert downloaded.mode == "L" and downloaded.size == (SIZE, SIZE)
    np.testing.assert_array_equal(np.asarray(downloaded), np.where(ids == DONTCARE, 255, ids))
    # What goes to the model is an RGB(A) PNG in the palette colours (canvas toBlob), exact to the pixel.
    palette = np.array(server.servable.spade_metadata["model"]["palette"], np.uint8)
    sent = Image.open(
        io.BytesIO(base64.b64decode(driver.execute_script("return window.painter.modelPngBase64()")))
    )
    assert sent.mode in ("RGB", "RGBA")
    np.testing.assert_array_equal(np.asarray(sent.convert("RGB")), palette[ids])
    # Uploading it back restores the map.
    path = tmp_path / "label.png"
    path.write_bytes(data)
    click(driver, "#clear")
    assert (label_ids(driver) == DONTCARE).all()
    upload(driver, "upload-label", path)
    wait_for(
        driver, "return document.getElementById('status').textContent.startsWith('loaded')", "the upload"
    )
    np.testing.assert_array_equal(label_ids(driver), ids)
    # A colour-coded map at half the size: colours become ids, the size is doubled with nearest-neighbour.
    small = np.random.default_rng(0).integers(0, len(CLASS_NAMES), (SIZE // 2, SIZE // 2))
    Image.fromarray(palette[small]).save(tmp_path / "colours.png")
    upload(driver, "upload-label", tmp_path / "colours.png")
    wait_for(driver, "return document.getElementById('status').textContent.includes('resized')", "the resize")
    np.testing.assert_array_equal(label_ids(driver), np.repeat(np.repeat(small, 2, 0), 2, 1))
    # Colours outside the palette are refused with a message; the map stays as it was.
    Image.fromarray(np.full((SIZE, SIZE, 3), 7, np.uint8)).save(tmp_path / "bad.png")
    upload(driver, "upload-label", tmp_path / "bad.png")
    wait_for(driver, "return document.getElementById('status').classList.contains('error')", "the error")
    status = driver.find_element("id", "status").text
    assert "1024 pixels have colours that are not in the model's palette" in status, status
    np.testing.assert_array_equal(label_ids(driver), np.repeat(np.repeat(small, 2, 0), 2, 1))


def test_a_model_without_style_input_and_server_errors(server, driver, tmp_path):
    # The same page and server, told (through ?metadata=) that the model is not a VAE model: the style
    # controls go away with a note, and the server's 400 for the seed-less request shows in the status line.
    meta = json.loads(json.dumps(server.servable.spade_metadata))
    meta["model"]["use_vae"] = False
    # Don't care drawn in sky's colour: colours no longer say which id a pixel is, so the page sends ids.
    palette = meta["model"]["palette"]
    palette[DONTCARE] = palette[SKY]
    static = tmp_path / "static"
    shutil.copytree(serve.STATIC_DIR, static)
    (static / "plain.json").write_text(json.dumps(meta))
    with running(serve.SpadeHTTPServer(("127.0.0.1", 0), server.servable, static_dir=str(static))) as other:
        open_page(driver, other.url + "/?metadata=static/plain.json")
        assert not driver.find_element("id", "seed").is_displayed()
        assert "not a VAE model" in driver.find_element("id", "style-note").text
        wait_for(driver, "return document.getElementById('status').classList.contains('error')", "the error")
        status = driver.find_element("id", "status").text
        assert "HTTP 400" in status and "predict_png has several inputs" in status, status
        save_screenshot(driver, tmp_path, "painter_no_style_input.png")
        sent = base64.b64decode(driver.execute_script("return window.painter.modelPngBase64()"))
        sent = Image.open(io.BytesIO(sent))
        assert sent.mode == "L" and (np.asarray(sent) == 255).all()  # all don't care, written as 255
