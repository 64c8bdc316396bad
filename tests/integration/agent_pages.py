"""Small local pages for the observation and tool tests, served on loopback from a thread.

``PageServer`` serves ``PAGES`` (path -> HTML) on 127.0.0.1 with port 0; ``other_origin``
gives the same server under ``localhost`` (another origin, for cross-origin frames).
``/icon.png`` is a small picture sent a moment late (an image still loading after a click).
"""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FORM = """<!doctype html><title>Form</title>
<h1>Fields</h1>
<label for="name">Your name</label> <input id="name" name="name" value="LJG">
<label>Secret <input type="password" name="pw"></label>
<input type="email" aria-label="Email">
<input type="number" name="qty" title="Quantity">
<input type="search" placeholder="Search here">
<input type="url" aria-label="Homepage"> <input type="tel" aria-label="Phone">
<label>Day <input type="date" name="day"></label>
<label>Hour <input type="time" name="hour"></label>
<label>When <input type="datetime-local" name="when"></label>
<label>Month <input type="month" name="month"></label>
<label>Week <input type="week" name="week"></label>
<label>Colour <input type="color" name="colour"></label>
<label>Level <input type="range" name="level" min="0" max="10"></label>
<label>Notes <textarea name="notes"></textarea></label>
<div contenteditable="true" aria-label="Editor">old</div>
<label><input type="checkbox" name="remember"> Remember me</label>
<label><input type="radio" name="size" value="s"> Small</label>
<label><input type="radio" name="size" value="l" checked> Large</label>
<label>Fruit <select name="fruit"><option>Apple</option><option value="p">Pear</option></select></label>
<label>Fruits <select name="fruits" multiple><option>Apple</option><option>Pear</option><option>Plum</option>
</select></label>
<label>Limited <input name="short" maxlength="3"></label>
<button disabled>Off</button>
<input type="file" name="doc" aria-label="Document">
<p id="events"></p>
<script>
  const seen = [];
  for (const el of document.querySelectorAll('input, textarea')) {
    el.addEventListener('change', () => { seen.push('change:' + (el.name || el.type)); events.textContent = seen.join(' '); });
  }
</script>
"""

LISTENERS = """<!doctype html><title>Listeners</title>
<div id="cover">START</div>
<p>Pick one: <span class="alink" id="a1">alpha</span>, <span class="alink" id="a2">beta</span>.</p>
<h3 role="tab" aria-expanded="false" id="sec">Section 2</h3>
<div id="prop">by property</div>
<div onclick="void 0">by attribute</div>
<div tabindex="0">focusable</div>
<div style="cursor:pointer" id="ptr"><span>pointer <b>inner</b></span></div>
<a href="/next.html" style="cursor:pointer"><span id="in-link">inside a link</span></a>
<div id="wrapper" style="cursor:pointer"><button>Only button</button></div>
<ul role="tree"><li role="treeitem" aria-expanded="true">Root</li></ul>
<p>plain text that is not clickable<br>and a second line</p>
<p id="out"></p>
<script>
  document.getElementById('cover').addEventListener('click', (e) => { e.target.remove(); out.textContent = 'started'; });
  for (const s of document.querySelectorAll('.alink')) s.addEventListener('click', () => { out.textContent = 'picked ' + s.textContent; });
  document.getElementById('prop').onclick = () => { out.textContent = 'property clicked'; };
  document.getElementById('sec').addEventListener('click', (e) => e.target.setAttribute('aria-expanded', 'true'));
</script>
"""

OVERLAY = """<!doctype html><title>Overlay</title>
<button id="under" onclick="document.title='clicked'">Under the veil</button>
<div id="veil" style="position:fixed;inset:0;background:rgba(0,0,0,.3)">A modal veil</div>
<button style="position:fixed;top:300px;left:10px;z-index:2" onclick="veil.remove()">Dismiss</button>
<a href="/slow" style="position:fixed;top:350px;left:10px;z-index:2">A slow page</a>
<button style="position:fixed;top:400px;left:10px;z-index:2;width:200px" onclick="document.title='half'">Half
hidden</button>
<button style="position:fixed;top:400px;left:10px;z-index:3;width:90px">On top</button>
"""

FRAMES = """<!doctype html><title>Frames</title>
<p>before the frames</p>
<iframe src="/inner.html"></iframe>
<iframe src="{other}/inner.html?cross=1"></iframe>
<p>after the frames</p>
<div id="host"></div>
<script>
  const root = document.getElementById('host').attachShadow({mode: 'open'});
  root.innerHTML = '<p>shadow text</p><button onclick="this.textContent=\\'pressed\\'">Shadow button</button>';
</script>
"""
INNER = """<!doctype html><title>Inner</title><p>inside a frame</p>
<button onclick="this.textContent='done'">Frame button</button>"""

BIG = """<!doctype html><title>Big</title><div id="box"></div>
<script>
  const box = document.getElementById('box');
  const parts = [];
  for (let i = 0; i < 50000; i++) parts.push('<button>b' + i + '</button>');
  box.innerHTML = parts.join('');
</script>
"""

THROWS = """<!doctype html><title>Throws</title><p>Some words to read.</p><button>Go</button>
<script>
  // A page that breaks what injected scripts use.
  window.getComputedStyle = () => { throw new Error('no styles for you'); };  // survived: kept by the init script
  Element.prototype.getBoundingClientRect = () => { throw new Error('no boxes for you'); };
</script>
"""

INFINITE = """<!doctype html><title>Infinite</title><div id="feed"></div>
<script>
  let n = 0;
  const more = () => { for (let i = 0; i < 30; i++) { const p = document.createElement('p'); p.textContent = 'item ' + (n++); feed.appendChild(p); } };
  more();
  window.addEventListener('scroll', () => { if (innerHeight + scrollY >= document.body.scrollHeight - 200) more(); });
</script>
"""

RERENDER = """<!doctype html><title>Rerender</title>
<div id="app"><button id="b">Save</button><button id="gone">Vanish</button></div>
<p id="out"></p>
<script>
  window.rerender = () => {
    const b = document.createElement('button'); b.textContent = 'Save';
    b.onclick = () => { out.textContent = 'saved'; };
    app.replaceChild(b, document.getElementById('b'));
    document.getElementById('gone').remove();
  };
</script>
"""

TABS = """<!doctype html><title>Tab one</title>
<a href="/next.html" target="_blank">Open next in a new tab</a>
<button onclick="window.open('/next.html?from=script')">Open by script</button>
<button onclick="confirm('Really?') ? (document.title='yes') : (document.title='no')">Ask</button>
"""
NEXT = "<!doctype html><title>Next page</title><p>This is the next page.</p>"

WIDGETS = """<!doctype html><title>Widgets</title>
<style>#menu{display:none} .zone{width:120px;height:60px;border:1px solid}</style>
<div id="hov">Menu<div id="menu"><a href="#x">Hidden entry</a></div></div>
<div id="src" class="zone" draggable="true">drag me</div>
<div id="dst" class="zone">drop here</div>
<input id="k" aria-label="Keys">
<div id="list" style="height:80px;overflow:auto" tabindex="0">
  <p>row 1</p><p>row 2</p><p>row 3</p><p>row 4</p><p>row 5</p><p>row 6</p><p>row 7</p><p>row 8</p></div>
<div style="height:2500px"></div>
<p id="far">the far away paragraph</p>
<p id="out"></p>
<script>
  hov.addEventListener('mouseenter', () => { menu.style.display = 'block'; });
  const log = [];
  k.addEventListener('keydown', (e) => { log.push((e.ctrlKey ? 'Ctrl+' : '') + e.key); out.textContent = log.join(','); });
  src.addEventListener('dragstart', (e) => e.dataTransfer.setData('text/plain', 'x'));
  dst.addEventListener('dragover', (e) => e.preventDefault());
  dst.addEventListener('drop', (e) => { e.preventDefault(); dst.textContent = 'dropped'; });
</script>
"""

# An accordion as jQuery UI draws it (tabs with aria-selected, panels labelled by their header,
# a keydown listener on the panel), a menu that records the items the pointer crosses, and a
# picker that fades out over Submit when closed.
MOTION = """<!doctype html><title>Motion</title>
<style>
  li { height: 30px; line-height: 30px; list-style: none; }
  #veil { position: absolute; left: 0; top: 0; width: 400px; height: 120px; background: #ddd; opacity: 1;
          transition: opacity 350ms linear; }
  #veil.fading { opacity: 0; }
  #stage { position: relative; height: 120px; }
  #p2 { transition: none; }
</style>
<div id="acc">
  <h3 role="tab" id="h1" aria-selected="true" aria-expanded="true">Section #1</h3>
  <div role="tabpanel" id="p1" aria-labelledby="h1"><p>Words of the first section.</p><p>Its second line.</p></div>
  <h3 role="tab" id="h2" aria-selected="false" aria-expanded="false">Section #2</h3>
</div>
<ul id="menu"><li>zero</li><li>one</li><li>two</li><li>three</li></ul>
<div id="stage"><button id="go">Submit</button><div id="veil"><button id="shut">Close picker</button></div></div>
<p id="out"></p>
<script>
  p1.addEventListener('keydown', () => {});
  const trail = [];
  for (const li of document.querySelectorAll('#menu li')) {
    li.addEventListener('mouseenter', () => trail.push(li.textContent));
    li.addEventListener('click', () => { out.textContent = 'crossed ' + trail.join(','); });
  }
  shut.addEventListener('click', () => {
    veil.classList.add('fading');
    veil.addEventListener('transitionend', () => { veil.style.display = 'none'; }, {once: true});
  });
  go.addEventListener('click', () => { out.textContent = 'submitted'; });
</script>
"""

# A 1x1 PNG; the page draws it 12 px high.
ICON = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
ICON_DELAY_S = 0.25  # the server's own pace, not a test's wait

# Icons drawn by CSS (MiniWoB's email inbox): they have no size until their picture arrives.
ICONS = """<!doctype html><title>Icons</title>
<style>.trash { content: url(/icon.png); height: 12px; cursor: pointer; }</style>
<button id="show">Show mail</button><div id="mail"></div>
<script>
  show.addEventListener('click', () => {
    mail.innerHTML = '<div>From Ann <span class="trash" title="Delete"></span></div>';
  });
</script>
"""

PAGES = {"/form.html": FORM, "/listeners.html": LISTENERS, "/overlay.html": OVERLAY, "/frames.html": FRAMES,
         "/inner.html": INNER, "/big.html": BIG, "/throws.html": THROWS, "/infinite.html": INFINITE,
         "/rerender.html": RERENDER, "/tabs.html": TABS, "/next.html": NEXT, "/widgets.html": WIDGETS,
         "/motion.html": MOTION, "/icons.html": ICONS}


class PageServer:
    """Serves ``PAGES`` on 127.0.0.1 (``/slow`` never answers until the server stops)."""

    def __init__(self) -> None:
        stop = self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/slow":
                    stop.wait(120)
                    return
                if path == "/icon.png":
                    stop.wait(ICON_DELAY_S)
                    self.send_response(200)
                    self.send_header("content-type", "image/png")
                    self.send_header("content-length", str(len(ICON)))
                    self.end_headers()
                    self.wfile.write(ICON)
                    return
                body = PAGES.get(path)
                if body is None:
                    self.send_error(404)
                    return
                data = body.replace("{other}", server.other_origin).encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.other_origin = f"http://localhost:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="agent-pages", daemon=True)

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
