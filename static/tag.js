/* regie publisher tag. Once per page:
 *   <div data-regie-slot="Publicité 2"></div>   (one per ad position)
 *   <script async src="https://ads.example/tag.js" data-regie-keywords="economie,bretagne"></script>
 * Keywords are per page: comma-separated data-regie-keywords on this script tag
 * and/or on <html>, merged and sent for every slot.
 * Consent: data-regie-consent="0" on this script tag, or the browser's Global
 * Privacy Control (navigator.globalPrivacyControl), and the tag sets no cookie,
 * sends no viewer id and asks regie to ignore the reader (consent: false).
 * Viewer id: a first-party cookie, regie_uid, for frequency caps; when the
 * browser keeps no cookie, the tag sends no id (and no cap applies).
 * Frequency state: the views this browser was served of frequency-capped
 * campaigns, as regie signed them, kept in localStorage (regie_fs) and sent
 * with each request, so that regie checks caps without its store. Requests
 * that carry it take turns across the site's tabs (a Web Lock), so that none
 * is answered from a state an earlier answer has outdated; without Web Locks or
 * storage the tag sends the id alone, and regie checks the caps in its store.
 * Sizes: each slot's width (CSS pixels available to it, or data-regie-width) is
 * sent, so that a slot with several sizes gets the largest that fits.
 * Lazy loading: data-regie-lazy on a slot, or on this script tag for every slot
 * (data-regie-lazy="false" on a slot opts it out), asks for the slot's ad only
 * when it comes within data-regie-lazy-margin pixels (default 200) of the
 * viewport; slots that come near together are asked for in one request, and
 * keep apart from the advertisers already on the page.
 * Slots get data-regie-state = lazy | loading | filled | empty | error, and filled
 * ones data-regie-decision. Empty and failed slots are hidden (display:none).
 * regie.refresh() fills every slot again (single-page apps) and returns
 * regie.ready, a Promise for the latest fill (lazy slots not yet near the
 * viewport are reported as "lazy"). HTML creatives may use %%CLICK_URL%%.
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

  // The viewer id, looked up once per page: undefined until then, null when no cookie
  // can be kept (cookies blocked, a sandboxed frame). Without a cookie the tag sends no id
  // at all rather than a new one per view: an id the next page cannot send again caps
  // nothing across pages, yet every one of them would be a new viewer for regie to
  // remember, and a reader whose browser refuses to keep an id is not given one anyway.
  // Without an id no frequency cap applies (README: Frequency caps).
  let uid;

  function viewerId() {
    if (uid !== undefined) return uid;
    uid = null;
    try { // sandboxed documents throw on cookies
      const m = document.cookie.match(/(?:^|;\s*)regie_uid=([0-9a-f]{32})/);
      if (m) return (uid = m[1]);
      const hex = Array.from(crypto.getRandomValues(new Uint8Array(16)),
        (b) => b.toString(16).padStart(2, '0')).join('');
      document.cookie = 'regie_uid=' + hex + '; Max-Age=31536000; Path=/; SameSite=Lax' +
        (location.protocol === 'https:' ? '; Secure' : '');
      // A browser that blocks cookies drops the write without an error: read it back.
      if (document.cookie.indexOf('regie_uid=' + hex) >= 0) uid = hex;
    } catch (e) { /* no cookie, no id */ }
    return uid;
  }

  // Read at every fill: a consent tool may change its answer and call regie.refresh().
  function trackingRefused() {
    return me.getAttribute('data-regie-consent') === '0' || navigator.globalPrivacyControl === true;
  }

  const STATE_KEY = 'regie_fs';

  // localStorage, or null where the browser keeps none (blocked, a sandboxed frame).
  function storage() {
    try {
      const s = window.localStorage;
      s.getItem(STATE_KEY);
      return s;
    } catch (e) {
      return null;
    }
  }

  // A refusal also forgets the id given before it, and the views counted under it.
  function forgetViewer() {
    uid = undefined;
    const s = storage();
    if (s) s.removeItem(STATE_KEY);
    try {
      if (/(?:^|;\s*)regie_uid=/.test(document.cookie)) {
        document.cookie = 'regie_uid=; Max-Age=0; Path=/; SameSite=Lax';
      }
    } catch (e) { /* sandboxed: there is no cookie to forget */ }
  }

  // CSS pixels available to the slot: its own width, or its container's while an
  // empty slot is shrunk to nothing (a flex item); data-regie-width overrides both.
  function slotWidth(el) {
    const given = parseInt(el.getAttribute('data-regie-width'), 10);
    let w = given > 0 ? given : Math.floor(el.getBoundingClientRect().width);
    if (!w && el.parentElement) w = Math.floor(el.parentElement.clientWidth);
    return w > 0 ? Math.min(w, 10000) : null;
  }

  function isLazy(el) {
    const own = el.getAttribute('data-regie-lazy');
    if (own === 'false' || own === '0') return false;
    return (own !== null || me.hasAttribute('data-regie-lazy')) && !!window.IntersectionObserver;
  }

  function lazyMargin() {
    const m = parseInt(me.getAttribute('data-regie-lazy-margin'), 10);
    return m >= 0 ? m : 200;
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

  // One page view: what every request of one fill shares.
  function pageView(gen) {
    const refused = trackingRefused();
    if (refused) forgetViewer();
    return { gen: gen, uid: (!refused && viewerId()) || undefined, refused: refused,
      kw: keywords(), campaigns: [], advertisers: [] };
  }

  async function request(view, batch) {
    const body = { slots: batch.map((el) => el.getAttribute('data-regie-slot')),
      widths: batch.map(slotWidth), uid: view.uid, keywords: view.kw };
    if (view.refused) body.consent = false;
    // Slots asked for later (lazy ones) keep apart from what the page shows already.
    if (view.campaigns.length) body.exclude = view.campaigns.slice(0, 50);
    if (view.advertisers.length) body.exclude_advertisers = view.advertisers.slice(0, 50);
    const post = async () => {
      const res = await fetch(origin + '/v1/decisions', {
        method: 'POST',
        credentials: 'omit',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
        // A request that hangs must not hold the frequency lock, and every later ad of
        // this browser behind it, for as long as the browser's own timeout.
        signal: window.AbortSignal && AbortSignal.timeout ? AbortSignal.timeout(10000) : undefined,
      });
      if (!res.ok) throw new Error('regie: decisions answered ' + res.status);
      return res.json();
    };
    const kept = view.uid && window.navigator.locks && storage();
    if (!kept) return (await post()).decisions;
    // Read, asked with and replaced by the answer's under one lock: no two requests of this
    // browser count from the same views.
    return window.navigator.locks.request('regie-frequency-state', async () => {
      body.frequency_state = kept.getItem(STATE_KEY) || '';
      const answer = await post();
      if (typeof answer.frequency_state === 'string') {
        try { kept.setItem(STATE_KEY, answer.frequency_state); } catch (e) { /* full: kept as was */ }
      }
      return answer.decisions;
    });
  }

  // Asks for the slots' ads, at most 20 a request (the API's limit), and renders them.
  function decide(view, slots) {
    slots.forEach((el) => el.setAttribute('data-regie-state', 'loading'));
    const batches = [];
    for (let i = 0; i < slots.length; i += 20) batches.push(slots.slice(i, i + 20));
    return Promise.all(batches.map(async (batch) => {
      let ds = null;
      try {
        ds = await request(view, batch);
      } catch (e) {
        console.warn(e);
      }
      if (view.gen !== generation) return;
      (ds || []).forEach((d) => {
        if (d && d.campaign_id && view.campaigns.indexOf(d.campaign_id) < 0) view.campaigns.push(d.campaign_id);
        if (d && d.advertiser_id && view.advertisers.indexOf(d.advertiser_id) < 0) view.advertisers.push(d.advertiser_id);
      });
      batch.forEach((el, i) => (ds ? render(el, ds[i], view.gen) : collapse(el, 'error')));
    }));
  }

  // Lazy slots are asked for when they come within the margin of the viewport;
  // those that come near in the same moment share one request.
  function watchLazy(view, slots) {
    const margin = lazyMargin() + 'px';
    let due = [];
    const io = new IntersectionObserver((entries) => {
      entries.forEach((entry) => {
        if (entry.isIntersecting && due.indexOf(entry.target) < 0) {
          io.unobserve(entry.target);
          due.push(entry.target);
        }
      });
      if (due.length) {
        const now = due;
        due = [];
        decide(view, now);
      }
    }, { rootMargin: margin + ' 0px ' + margin + ' 0px' });
    slots.forEach((el) => io.observe(el));
    cleanups.push(() => io.disconnect());
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
    const view = pageView(gen);
    const lazy = slots.filter(isLazy);
    const eager = slots.filter((el) => lazy.indexOf(el) < 0);
    lazy.forEach((el) => el.setAttribute('data-regie-state', 'lazy'));
    await decide(view, eager);
    // Watched once the eager slots are shown, so that lazy ones keep apart from them.
    if (lazy.length && gen === generation) watchLazy(view, lazy);
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
