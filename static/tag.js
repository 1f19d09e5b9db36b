/* regie publisher tag. Once per page:
 *   <div data-regie-slot="Publicité 2"></div>   (one per ad position)
 *   <script async src="https://ads.example/tag.js" data-regie-keywords="economie,bretagne"></script>
 * Keywords are per page: comma-separated data-regie-keywords on this script tag
 * and/or on <html>, merged and sent for every slot.
 * Slots get data-regie-state = loading | filled | empty | error, and filled ones
 * data-regie-decision. Empty and failed slots are hidden (display:none).
 * regie.refresh() fills every slot again (single-page apps) and returns
 * regie.ready, a Promise for the latest fill. HTML creatives may use %%CLICK_URL%%.
 */
(function () {
  'use strict';
  if (window.regie && window.regie.refresh) return; // included twice: keep the first

  // currentScript is only set while the tag first runs. Requests go to the
  // origin the tag came from, whatever page embeds it.
  const me = document.currentScript || document.querySelector('script[src$="/tag.js"]');
  const origin = new URL(me.src, location.href).origin;
  const safe = (u) => typeof u === 'string' && /^https?:\/\//i.test(u);
  let generation = 0; // a newer fill voids the late answers of older ones
  let cleanups = []; // stops the viewability watchers of the current fill
  const collapsed = new WeakSet(); // slots whose display:none is ours to undo

  function viewerId() {
    const hex = Array.from(crypto.getRandomValues(new Uint8Array(16)),
      (b) => b.toString(16).padStart(2, '0')).join('');
    try { // sandboxed documents throw on cookies: then the id is a one-off
      const m = document.cookie.match(/(?:^|;\s*)regie_uid=([0-9a-f]{32})/);
      if (m) return m[1];
      document.cookie = 'regie_uid=' + hex + '; Max-Age=31536000; Path=/; SameSite=Lax' +
        (location.protocol === 'https:' ? '; Secure' : '');
    } catch (e) { /* keep the one-off id */ }
    return hex;
  }

  function keywords() {
    const raw = [me.getAttribute('data-regie-keywords'),
      document.documentElement.getAttribute('data-regie-keywords')].join(',');
    return Array.from(new Set(raw.split(',').map((k) => k.trim()).filter(Boolean)));
  }

  // fetch needs no CSP allowance beyond the connect-src the decisions call
  // already needs; keepalive lets a beacon outlive the page.
  function beacon(url) {
    if (safe(url)) {
      fetch(url, { mode: 'no-cors', credentials: 'omit', keepalive: true, cache: 'no-store' })
        .catch(() => {});
    }
  }

  // Text and attributes only: nothing the server sends is parsed as HTML here.
  function make(tag, attrs, text) {
    const el = document.createElement(tag);
    Object.keys(attrs).forEach((k) => { if (attrs[k] != null) el.setAttribute(k, attrs[k]); });
    if (text) el.textContent = text;
    return el;
  }

  function collapse(el, state) {
    el.setAttribute('data-regie-state', state);
    el.style.display = 'none';
    collapsed.add(el);
  }

  // MRC viewability: half the creative in view for one continuous second, tab
  // visible. Leaving view or hiding the tab starts the second again.
  function watchViewable(url, node) {
    if (!window.IntersectionObserver) return;
    let inView = false;
    let timer = 0;
    const check = () => {
      if (inView && !document.hidden) {
        if (!timer) timer = setTimeout(() => { beacon(url); stop(); }, 1000);
      } else {
        clearTimeout(timer);
        timer = 0;
      }
    };
    const io = new IntersectionObserver((entries) => {
      inView = entries[entries.length - 1].intersectionRatio >= 0.5;
      check();
    }, { threshold: [0, 0.5] });
    const stop = () => {
      clearTimeout(timer);
      io.disconnect();
      document.removeEventListener('visibilitychange', check);
    };
    io.observe(node);
    document.addEventListener('visibilitychange', check);
    cleanups.push(stop);
  }

  function render(el, d, gen) {
    const c = d && d.decision_id && d.creative;
    if (!c || !safe(d.click_url)) return collapse(el, 'empty');
    // Counted once really shown, unless a refresh has removed it meanwhile.
    const shown = (node) => {
      if (gen !== generation || !node.isConnected) return;
      beacon(d.impression_url);
      watchViewable(d.viewable_url, node);
    };
    const a = make('a', { class: 'regie-ad regie-' + c.format, href: d.click_url,
      target: '_blank', rel: 'noopener sponsored' });
    let root = a; // what goes into the slot
    let node = a; // what must be seen to count
    if (c.format === 'image' && safe(c.image_url)) {
      node = a.appendChild(make('img', { src: c.image_url, alt: c.alt || c.title || '',
        width: c.width, height: c.height }));
      node.style.cssText = 'max-width:100%;height:auto;border:0;vertical-align:top';
      node.addEventListener('load', () => shown(node));
      node.addEventListener('error', () => gen === generation && collapse(el, 'error'));
    } else if (c.format === 'text' && c.title) {
      a.style.display = 'block';
      [['strong', c.title], ['span', c.body, 'regie-body'], ['span', c.cta, 'regie-cta']]
        .forEach(([tag, text, cls]) => {
          if (text) a.appendChild(make(tag, { class: cls }, text)).style.display = 'block';
        });
    } else if (c.format === 'html' && typeof c.html === 'string') {
      // No allow-scripts, no allow-same-origin: static markup that cannot reach
      // the page. <base> opens its links in a new tab, outside the sandbox.
      const href = d.click_url.replace(/[&<>"']/g, (ch) => '&#' + ch.charCodeAt(0) + ';');
      root = node = make('iframe', { class: a.className, title: c.title || 'Publicité',
        sandbox: 'allow-popups allow-popups-to-escape-sandbox', scrolling: 'no',
        width: c.width || 300, height: c.height || 250,
        srcdoc: '<base target="_blank">' + c.html.split('%%CLICK_URL%%').join(href) });
      node.style.cssText = 'border:0;vertical-align:top';
      node.addEventListener('load', () => shown(node));
    } else {
      return collapse(el, 'empty'); // a format this tag does not know yet
    }
    el.appendChild(root);
    el.setAttribute('data-regie-state', 'filled');
    el.setAttribute('data-regie-decision', d.decision_id);
    if (node === a) shown(a); // text: nothing left to load
  }

  async function request(names, uid, kw) {
    const res = await fetch(origin + '/v1/decisions', {
      method: 'POST',
      credentials: 'omit',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ slots: names, uid: uid, keywords: kw }),
    });
    if (!res.ok) throw new Error('regie: decisions answered ' + res.status);
    return (await res.json()).decisions;
  }

  async function fill() {
    const gen = ++generation;
    cleanups.forEach((stop) => stop());
    cleanups = [];
    const slots = Array.from(document.querySelectorAll('[data-regie-slot]'));
    slots.forEach((el) => {
      el.textContent = '';
      el.removeAttribute('data-regie-decision');
      el.setAttribute('data-regie-state', 'loading');
      if (collapsed.delete(el)) el.style.removeProperty('display');
    });
    const uid = viewerId();
    const kw = keywords();
    const batches = []; // the API takes at most 20 slots per call
    for (let i = 0; i < slots.length; i += 20) batches.push(slots.slice(i, i + 20));
    await Promise.all(batches.map(async (batch) => {
      let ds = null;
      try {
        ds = await request(batch.map((el) => el.getAttribute('data-regie-slot')), uid, kw);
      } catch (e) {
        console.warn(e);
      }
      if (gen !== generation) return;
      batch.forEach((el, i) => (ds ? render(el, ds[i], gen) : collapse(el, 'error')));
    }));
    return slots.map((el) => ({ slot: el.getAttribute('data-regie-slot'),
      state: el.getAttribute('data-regie-state'),
      decision_id: el.getAttribute('data-regie-decision') }));
  }

  // An async tag may run before the slots are parsed.
  const domReady = new Promise((resolve) => (document.readyState === 'loading'
    ? document.addEventListener('DOMContentLoaded', resolve) : resolve()));
  const api = window.regie = {};
  api.refresh = () => (api.ready = domReady.then(fill));
  api.refresh();
})();
