"""The JavaScript that reads a page for the observation (one ``evaluate`` per frame).

``LISTENERS_SCRIPT`` is added to every context before the page's own scripts
(``worker/contexts.py``): it wraps ``EventTarget.prototype.addEventListener`` so that an
element given a click/mouse/pointer/key/touch listener is remembered in a ``WeakSet``
(jQuery handlers go through ``addEventListener`` too), and keeps ``JSON.stringify`` and
``getComputedStyle`` as they were before the page could replace them. Listeners set as
``on*`` properties or attributes are read off the element when the page is observed.

``SNAPSHOT_SCRIPT`` walks one document in document order, piercing open shadow roots,
and returns (as one JSON string) a flat list of items::

    ["t", "visible text"]                        a run of text (merged into lines in Python)
    ["b"]                                        a block boundary (ends the current text line)
    ["e", N, "<tag attrs>name", tag, role, name] element N (data-blast-idx="N" is set on it)
    ["f", k, src]                                an iframe (data-blast-frame="k"): its frame's
                                                 items are spliced in here by observe.py

An element is listed when a person could use it and a click can reach it: native
controls, links, interactive ARIA roles, contenteditable roots, tabindex >= 0,
elements with the listeners recorded above or ``on*`` handlers, and where
``cursor: pointer`` starts. "Weak" candidates (listeners, cursor, tabindex) inside a
link/button/role-bearing element, or wrapping native controls, are left out: they are
the same thing twice. An element in the viewport is listed only when a hit test
(``elementFromPoint`` at its centre and two inner corners) lands on it or inside it;
a covered element's text is kept as plain text. Text inside a listed element is its
name and is not repeated as text (unless it contains further listed elements); the
text of a ``<label>`` of a listed control is likewise only that control's name. A listed
*container* (a tab panel, region, dialog, form, list, ... by role or tag) never takes its
text as its name: its name is its label (aria-labelledby, aria-label, title) and its text
stays lines of the page, so an open accordion section still shows what it says.
Walking stops at ``maxElements`` listed elements, ``maxChars`` characters of text or
``maxNodes`` visited nodes; ``truncated`` then says so.
"""

from __future__ import annotations

LISTENERS_SCRIPT = """
(() => {
  if (window.__blastListeners) return;
  const seen = new WeakSet();
  Object.defineProperty(window, '__blastListeners', {value: seen});
  // The built-ins the snapshot needs, kept before a page can replace them.
  Object.defineProperty(window, '__blastBuiltins',
                        {value: {stringify: JSON.stringify.bind(JSON), style: window.getComputedStyle.bind(window)}});
  const kinds = new Set(['click', 'dblclick', 'mousedown', 'mouseup', 'pointerdown', 'pointerup',
                         'keydown', 'keyup', 'keypress', 'touchstart', 'touchend', 'input', 'change',
                         'mouseenter', 'mouseover', 'dragstart', 'drop']);
  const add = EventTarget.prototype.addEventListener;
  EventTarget.prototype.addEventListener = function (type, listener, options) {
    try { if (kinds.has(type) && this instanceof Element) seen.add(this); } catch (e) { /* never break the page */ }
    return add.call(this, type, listener, options);
  };
})();
"""

# Shared by the snapshot and by the re-find script of an action (tools.py).
_NAME_FUNCTIONS = r"""
  const squash = (s) => (s || '').replace(/\s+/g, ' ').trim();
  const cut = (s, n) => s.length > n ? s.slice(0, n - 1) + '…' : s;
  const byIds = (el, ids) => ids.split(/\s+/).map(id => {
    const r = el.getRootNode && el.getRootNode();
    const t = (r && r.getElementById) ? r.getElementById(id) : document.getElementById(id);
    return t ? (t.innerText || t.textContent || '') : '';
  }).join(' ');
  // A label's own text, without the text of the controls inside it (a select's options).
  const labelText = (l) => {
    const out = [];
    const visit = (n) => {
      if (n.nodeType === 3) out.push(n.data);
      else if (n.nodeType === 1 && !['SELECT', 'TEXTAREA', 'INPUT', 'SCRIPT', 'STYLE'].includes(n.tagName))
        for (const c of n.childNodes) visit(c);
    };
    visit(l);
    return out.join(' ');
  };
  const labelName = (el) => {
    const lb = el.getAttribute('aria-labelledby');
    if (lb) { const s = squash(byIds(el, lb)); if (s) return s; }
    const al = squash(el.getAttribute('aria-label'));
    if (al) return al;
    if (el.labels && el.labels.length) {
      const s = squash(Array.from(el.labels).map(labelText).join(' '));
      if (s) return s;
    }
    const alt = squash(el.getAttribute('alt'));
    if (alt) return alt;
    return '';
  };
  const fallbackName = (el) => squash(el.getAttribute('title')) || squash(el.getAttribute('placeholder'));
  const FORM = new Set(['INPUT', 'SELECT', 'TEXTAREA']);
  // The name an action's fingerprint check computes (the snapshot builds it from visible text).
  const nameOf = (el) => {
    let n = labelName(el);
    if (!n && el.tagName === 'INPUT' && ['button', 'submit', 'reset'].includes(el.type)) n = squash(el.value);
    if (!n && !FORM.has(el.tagName) && !el.isContentEditable) n = squash(el.innerText || el.textContent || '');
    return cut(n || fallbackName(el), 100);
  };
"""

SNAPSHOT_SCRIPT = (
    """
([start, maxElements, maxChars, maxNodes]) => {
"""
    + _NAME_FUNCTIONS
    + r"""
  const NATIVE = new Set(['A', 'BUTTON', 'INPUT', 'SELECT', 'TEXTAREA', 'SUMMARY']);
  const ROLES = new Set(['button', 'link', 'tab', 'menuitem', 'menuitemcheckbox', 'menuitemradio', 'option',
    'treeitem', 'checkbox', 'radio', 'switch', 'combobox', 'slider', 'spinbutton', 'gridcell', 'searchbox',
    'textbox', 'listbox', 'scrollbar', 'columnheader', 'rowheader']);
  const SKIP = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'HEAD', 'META', 'LINK', 'TITLE', 'OPTION',
    'DATALIST']);
  // Listed for their listeners or role, but holding a section of the page rather than naming one thing.
  const CONTAINER_ROLES = new Set(['tabpanel', 'region', 'dialog', 'alertdialog', 'group', 'document', 'article',
    'main', 'form', 'navigation', 'complementary', 'list', 'tree', 'grid', 'table', 'menu', 'toolbar']);
  const CONTAINER_TAGS = new Set(['DIALOG', 'FORM', 'SECTION', 'ARTICLE', 'MAIN', 'NAV', 'ASIDE', 'TABLE', 'UL', 'OL',
    'FIELDSET']);
  const HANDLERS = ['onclick', 'onmousedown', 'onmouseup', 'onpointerdown', 'onkeydown', 'ondblclick'];
  const NO_VALUE = new Set(['checkbox', 'radio', 'button', 'submit', 'reset', 'file', 'image']);
  const listeners = window.__blastListeners;
  const builtins = window.__blastBuiltins || {stringify: JSON.stringify.bind(JSON), style: window.getComputedStyle};
  const getComputedStyle = builtins.style;
  const vw = window.innerWidth, vh = window.innerHeight;
  const items = [];
  // Attributes are set after the walk: setting one between style reads would force a style
  // recalculation per element (quadratic on large pages).
  const marks = [];
  let idx = start, listed = 0, chars = 0, nodes = 0, frames = 0, truncated = '';

  // The marks of the last observation, changed only where they differ after the walk: an attribute
  // write invalidates style, and the same page observed again mostly gets the same numbers.
  const old = {};
  for (const k of ['data-blast-idx', 'data-blast-frame']) {
    old[k] = new Map();
    for (const e of document.querySelectorAll('[' + k + ']')) old[k].set(e, e.getAttribute(k));
  }

  const deepActive = () => {
    let a = document.activeElement;
    while (a && a.shadowRoot && a.shadowRoot.activeElement) a = a.shadowRoot.activeElement;
    return a;
  };
  const focused = deepActive();
  const deepHit = (x, y) => {
    let h = document.elementFromPoint(x, y);
    while (h && h.shadowRoot) {
      const inner = h.shadowRoot.elementFromPoint(x, y);
      if (!inner || inner === h) break;
      h = inner;
    }
    return h;
  };
  const within = (el, h) => {  // h is el or inside el (across shadow boundaries)
    for (let n = h; n; n = n.parentNode || n.host) if (n === el) return true;
    return false;
  };
  // Whether a click at the element would reach it; elements outside the viewport count as reachable.
  const reachable = (el, r) => {
    if (r.bottom <= 0 || r.right <= 0 || r.top >= vh || r.left >= vw) return true;
    const x0 = Math.max(r.left, 0), x1 = Math.min(r.right, vw), y0 = Math.max(r.top, 0), y1 = Math.min(r.bottom, vh);
    const pts = [[(x0 + x1) / 2, (y0 + y1) / 2], [x0 + 2, y0 + 2], [x1 - 2, y1 - 2]];
    for (const [x, y] of pts) {
      const h = deepHit(x, y);
      if (!h || within(el, h)) return true;
      if (h.tagName === 'LABEL' && h.control === el) return true;
    }
    return false;
  };
  const roleOf = (el) => (el.getAttribute('role') || '').trim().split(/\s+/)[0].toLowerCase();
  const strong = (el, tag, role) =>
    (NATIVE.has(tag) && (tag !== 'A' || el.hasAttribute('href')) && !(tag === 'INPUT' && el.type === 'hidden'))
    || ROLES.has(role) || (el.isContentEditable && !(el.parentElement && el.parentElement.isContentEditable));
  const weak = (el, tag, st, parentCursor) => {
    if (tag === 'BODY' || tag === 'HTML') return false;
    if (listeners && listeners.has(el)) return true;
    for (const h of HANDLERS) if (el[h]) return true;
    const ti = el.getAttribute('tabindex');
    if (ti !== null && parseInt(ti, 10) >= 0) return true;
    if (tag === 'LABEL' && el.control && !el.control.checkVisibility()) return true;  // a custom-drawn control
    if (el.getAttribute('draggable') === 'true') return true;
    return st.cursor === 'pointer' && parentCursor !== 'pointer';
  };
  const stateOf = (el, tag, role) => {
    const a = [];
    const q = (k, v) => a.push(k + '="' + cut(squash(String(v)), 100).replace(/"/g, '&quot;') + '"');
    if (el.hasAttribute('role')) q('role', el.getAttribute('role'));
    const type = tag === 'INPUT' ? (el.type || 'text') : '';
    if (type) q('type', type);
    if (tag === 'A' && el.hasAttribute('href')) q('href', el.getAttribute('href'));
    if (el.getAttribute('name')) q('name', el.getAttribute('name'));
    if (el.getAttribute('placeholder')) q('placeholder', el.getAttribute('placeholder'));
    let value = null;
    if ((tag === 'INPUT' && !NO_VALUE.has(type)) || tag === 'TEXTAREA') value = el.value;
    else if (el.isContentEditable) value = el.innerText;
    else if (['slider', 'spinbutton', 'textbox', 'searchbox'].includes(role) && el.hasAttribute('aria-valuenow'))
      value = el.getAttribute('aria-valuenow');
    if (value) q('value', type === 'password' ? '•'.repeat(Math.min(value.length, 20)) : value);
    if (tag === 'SELECT') {
      const sel = Array.from(el.selectedOptions).map(o => squash(o.text));
      if (sel.length) q('selected', sel.join(', '));
    }
    const ctl = tag === 'LABEL' && el.control ? el.control : el;
    if (ctl.checked === true || el.getAttribute('aria-checked') === 'true') a.push('checked');
    // aria-selected is the current tab / option / row, not a ticked box: its own flag.
    if (el.getAttribute('aria-selected') === 'true' || (tag === 'OPTION' && el.selected)) a.push('selected');
    if (el.multiple) a.push('multiple');
    if (el.disabled || el.getAttribute('aria-disabled') === 'true') a.push('disabled');
    if (el.readOnly) a.push('readonly');
    if (el.required || el.getAttribute('aria-required') === 'true') a.push('required');
    if (el === focused) a.push('focused');
    const ex = el.getAttribute('aria-expanded');
    if (ex === 'true' || ex === 'false') a.push('expanded="' + ex + '"');
    else if (tag === 'SUMMARY' && el.parentElement && el.parentElement.tagName === 'DETAILS')
      a.push('expanded="' + (el.parentElement.open ? 'true' : 'false') + '"');
    return a;
  };
  const optionsOf = (el) => {
    const texts = Array.from(el.options).map(o => squash(o.text));
    const shown = texts.slice(0, 50).join(', ');
    return ' options: ' + shown + (texts.length > 50 ? ', … (' + (texts.length - 50) + ' more)' : '');
  };
  const text = (s) => { if (s) { items.push(['t', s]); chars += s.length; } };

  // Visit el (visible parent state in `inherited`); `inside` is the nearest listed ancestor's kind.
  const walk = (node, parentCursor, inside, quiet) => {
    if (truncated) return;
    if (++nodes > maxNodes) { truncated = 'nodes'; return; }
    if (node.nodeType === 3) {
      if (!quiet) text(squash(node.data));
      return;
    }
    if (node.nodeType !== 1 && node.nodeType !== 11) return;
    if (node.nodeType === 11) { for (const c of node.childNodes) walk(c, parentCursor, inside, quiet); return; }
    const el = node, tag = el.tagName;
    if (SKIP.has(tag)) return;
    if (tag === 'BR') { items.push(['b']); return; }
    const st = getComputedStyle(el);
    if (st.display === 'none') return;
    if (tag === 'IFRAME' || tag === 'FRAME') {
      const r = el.getBoundingClientRect();
      if (r.width > 0 && r.height > 0 && st.visibility !== 'hidden') {
        marks.push([el, 'data-blast-frame', String(frames)]);
        items.push(['f', frames++, el.getAttribute('src') || '']);
      }
      return;
    }
    const block = !st.display.startsWith('inline') && st.display !== 'contents';
    if (block) items.push(['b']);
    const role = roleOf(el);
    let candidate = false, isStrong = false;
    if (st.visibility !== 'hidden') {
      isStrong = strong(el, tag, role);
      if (isStrong) candidate = true;
      else if (weak(el, tag, st, parentCursor)) {
        // The same thing twice: a handler inside a link/button, or a wrapper around native controls.
        const inner = inside !== 'strong' && el.querySelector('a[href], button, input, select, textarea, [role]');
        candidate = inside !== 'strong' && !(inner && inner.checkVisibility());
      }
    }
    let r = null;
    if (candidate) {
      r = el.getBoundingClientRect();
      if ((r.width === 0 && r.height === 0 && tag !== 'LABEL') || !reachable(el, r)) candidate = false;
    }
    const labelOfListed = tag === 'LABEL' && el.control && el.control !== el && el.control.checkVisibility();
    if (!candidate) {
      if (tag === 'IMG' && !quiet && inside) text(squash(el.getAttribute('alt')));
      if (tag === 'INPUT' && el.type !== 'hidden' || tag === 'TEXTAREA' || tag === 'SELECT') {
        // a covered or hidden control: its value is still what a person would read
      }
      const root = el.shadowRoot;
      if (root) walk(root, st.cursor, inside, quiet || labelOfListed);
      for (const c of el.childNodes) walk(c, st.cursor, inside, quiet || labelOfListed);
      if (block) items.push(['b']);
      return;
    }
    if (listed >= maxElements) { truncated = 'elements'; return; }
    listed++;
    const n = idx++;
    marks.push([el, 'data-blast-idx', String(n)]);
    const item = ['e', n, '', tag.toLowerCase(), role, ''];
    items.push(item);
    const mark = items.length;
    const childInside = isStrong && tag !== 'SELECT' ? 'strong' : 'weak';
    if (tag !== 'SELECT' && tag !== 'TEXTAREA') {
      if (el.shadowRoot) walk(el.shadowRoot, st.cursor, childInside, quiet);
      for (const c of el.childNodes) walk(c, st.cursor, childInside, quiet);
    }
    // Own text becomes the name unless further listed elements are inside (then it stays text),
    // unless it is long (a scrollable list's rows stay lines of text), and unless the element is
    // a container (a tab panel, a dialog, a region): its name is its label, its text stays lines.
    const nested = items.slice(mark).some(x => x[0] === 'e' || x[0] === 'f');
    const container = CONTAINER_ROLES.has(role) || CONTAINER_TAGS.has(tag);
    let own = '';
    if (!nested && !container) {
      own = squash(items.slice(mark).filter(x => x[0] === 't').map(x => x[1]).join(' '));
      if (own.length <= 100 || isStrong) items.length = mark;
      else own = '';
    }
    const ctl = tag === 'LABEL' && el.control ? el.control : null;
    let name = labelName(el) || (ctl ? labelName(ctl) : '');
    if (!name && tag === 'INPUT' && ['button', 'submit', 'reset'].includes(el.type)) name = squash(el.value);
    if (!name && !['INPUT', 'SELECT', 'TEXTAREA'].includes(tag) && !el.isContentEditable) name = own;
    if (!name) name = fallbackName(el);
    name = cut(name, 100);
    const attrs = stateOf(el, tag, role);
    item[2] = '<' + tag.toLowerCase() + (attrs.length ? ' ' + attrs.join(' ') : '') + '>' + name
      + (tag === 'SELECT' ? optionsOf(el) : '');
    item[5] = name;
    if (block) items.push(['b']);
    if (chars > maxChars) truncated = 'chars';
  };
  if (document.body) walk(document.body, '', null, false);
  else if (document.documentElement) walk(document.documentElement, '', null, false);
  for (const [el, k, v] of marks) {
    const was = old[k].get(el);
    old[k].delete(el);
    if (was !== v) el.setAttribute(k, v);
  }
  for (const k in old) for (const e of old[k].keys()) e.removeAttribute(k);
  const se = document.scrollingElement || document.documentElement;
  const scroll = se ? [se.scrollTop, Math.max(0, se.scrollHeight - se.scrollTop - vh)] : [0, 0];
  const popups = window.__blastPopups ? window.__blastPopups.splice(0) : [];
  // One JSON string: Playwright's structured serialisation of thousands of small arrays is far slower.
  return builtins.stringify({items, next: idx, truncated, scroll, viewport: [vw, vh], popups, title: document.title});
}
"""
)

# Finds the element that best matches a fingerprint (tag, role, name) when its number is gone
# or now marks something else; returns the new element's number (set afresh) or -1.
REFIND_SCRIPT = (
    """
([tag, role, name, fresh]) => {
"""
    + _NAME_FUNCTIONS
    + r"""
  const found = [];
  const visit = (root) => {
    for (const el of root.querySelectorAll(tag)) {
      if ((el.getAttribute('role') || '').split(/\s+/)[0].toLowerCase() !== role) continue;
      if (!el.checkVisibility()) continue;
      const n = nameOf(el);
      if (n === name || (name.length > 3 && n.includes(name.replace(/…$/, '')))) found.push(el);
    }
    for (const el of root.querySelectorAll('*')) if (el.shadowRoot) visit(el.shadowRoot);
  };
  visit(document);
  if (found.length !== 1) return found.length ? -2 : -1;
  found[0].setAttribute('data-blast-idx', String(fresh));
  return fresh;
}
"""
)

# What an element is, for the fingerprint check before an action: [tag, role, name].
FINGERPRINT_SCRIPT = (
    """
(el) => {
"""
    + _NAME_FUNCTIONS
    + r"""
  return [el.tagName.toLowerCase(), (el.getAttribute('role') || '').split(/\s+/)[0].toLowerCase(), nameOf(el)];
}
"""
)
