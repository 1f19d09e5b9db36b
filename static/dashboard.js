// Advertiser dashboard: campaign counters, a daily chart, the click-through rate of each
// slot over time and the slot breakdown, read from the stats API with the advertiser's key,
// and the same figures as a CSV download.
//
// The key lives in sessionStorage so that it survives a reload but not the tab.
// Every number is shown formatted and also carried raw in data-value, next to
// data-campaign / data-metric / data-slot / data-date, for scripts and tests.
(function () {
  'use strict';
  const KEY = 'regie.apiKey';
  const SVG = 'http://www.w3.org/2000/svg';
  const METRICS = [
    ['served', 'Diffusions'],
    ['impressions', 'Impressions'],
    ['viewable', 'Impressions visibles'],
    ['clicks', 'Clics'],
    ['ctr', 'Taux de clic'],
  ];
  const STATUS = { active: 'Active', paused: 'En pause' };
  // Invalid traffic, counted apart (never in the figures above it), by reason.
  const INVALID = [
    ['served', 'diffusion', 'diffusions'],
    ['impressions', 'impression', 'impressions'],
    ['viewable', 'impression visible', 'impressions visibles'],
    ['clicks', 'clic', 'clics'],
  ];
  const REASONS = {
    bot: 'robots et outils automatiques',
    rate: 'trop de requêtes d\'une même adresse',
    no_impression: 'clics sans impression',
    too_fast: 'clics trop rapides',
  };
  const integer = new Intl.NumberFormat('fr-FR');
  const percent = new Intl.NumberFormat('fr-FR',
    { style: 'percent', minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const shortDate = new Intl.DateTimeFormat('fr-FR',
    { day: 'numeric', month: 'short', timeZone: 'UTC' });
  const longDate = new Intl.DateTimeFormat('fr-FR',
    { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' });
  const day = (iso) => new Date(iso + 'T00:00:00Z');

  const $ = (id) => document.getElementById(id);

  // Nodes are built from text and attributes: campaign ids and slot names are
  // data, never markup.
  function el(tag, attrs, ...children) {
    const node = tag.startsWith('svg:')
      ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => { if (v != null) node.setAttribute(k, v); });
    children.forEach((c) => { if (c != null) node.append(c); });
    return node;
  }

  function format(metric, value) {
    return metric === 'ctr' ? percent.format(value || 0) : integer.format(value || 0);
  }

  function metricCell(tag, metric, value, attrs) {
    return el(tag, Object.assign({ 'data-metric': metric, 'data-value': String(value || 0) }, attrs),
      format(metric, value));
  }

  function say(text, isError) {
    $('message').textContent = text || '';
    $('message').className = isError ? 'error' : '';
  }

  class Unauthorized extends Error {}

  async function api(path) {
    const res = await fetch(path, {
      headers: { Authorization: 'Bearer ' + sessionStorage.getItem(KEY), Accept: 'application/json' },
      cache: 'no-store',
    });
    if (res.status === 401) throw new Unauthorized();
    const body = await res.json().catch(() => null);
    if (!res.ok) {
      throw new Error((body && body.error && body.error.message) || 'Erreur ' + res.status);
    }
    return body;
  }

  // Days with no event may be missing from the answer; the chart still needs
  // one column per day of the period.
  function everyDay(from, to, days) {
    const byDate = new Map(days.map((d) => [d.date, d]));
    const out = [];
    const end = Date.parse(to + 'T00:00:00Z');
    for (let t = Date.parse(from + 'T00:00:00Z'); t <= end && out.length < 400; t += 864e5) {
      const date = new Date(t).toISOString().slice(0, 10);
      out.push(byDate.get(date) || { date, served: 0, impressions: 0, viewable: 0, clicks: 0 });
    }
    return out;
  }

  // The smallest of 1, 2, 5, 10, 20, 50… at least `n`: axis labels stay round.
  function niceCeiling(n) {
    if (!(n > 1)) return 1;
    const power = 10 ** Math.floor(Math.log10(n));
    return [1, 2, 5, 10].map((f) => f * power).find((v) => v >= n);
  }

  // Impressions and viewable impressions as overlapping bars on the left scale,
  // clicks as a line on their own right scale (they are orders of magnitude fewer).
  function chart(stats) {
    const days = everyDay(stats.from, stats.to, stats.days || []);
    const W = 720, H = 220, left = 44, right = 36, top = 12, bottom = 26;
    const plotW = W - left - right, plotH = H - top - bottom;
    const maxImpr = niceCeiling(Math.max(...days.map((d) => d.impressions)));
    const maxClicks = niceCeiling(Math.max(...days.map((d) => d.clicks)));
    const step = plotW / Math.max(1, days.length);
    const y = (v, max) => top + plotH - (v / max) * plotH;
    const svg = el('svg:svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': 'Impressions, impressions visibles et clics par jour', 'data-chart': '' });

    [0, maxImpr / 2, maxImpr].filter(Number.isInteger).forEach((v) => {
      svg.append(el('svg:line', { x1: left, x2: W - right, y1: y(v, maxImpr), y2: y(v, maxImpr),
        stroke: '#e3e3e3' }));
      svg.append(el('svg:text', { x: left - 6, y: y(v, maxImpr) + 4, 'text-anchor': 'end' },
        integer.format(v)));
    });
    svg.append(el('svg:text', { x: W - right + 6, y: top + 4 }, integer.format(maxClicks)));

    const labelEvery = Math.ceil(days.length / 10);
    const points = [];
    days.forEach((d, i) => {
      const x = left + i * step;
      const w = Math.max(1, step * 0.7);
      const when = shortDate.format(day(d.date));
      const g = el('svg:g', { 'data-date': d.date },
        el('svg:title', {}, `${when} : ${integer.format(d.impressions)} impressions, ` +
          `${integer.format(d.viewable)} visibles, ${integer.format(d.clicks)} clics`),
        el('svg:rect', { x: x + (step - w) / 2, width: w, y: y(d.impressions, maxImpr),
          height: top + plotH - y(d.impressions, maxImpr), class: 'impr' }),
        el('svg:rect', { x: x + (step - w / 2) / 2, width: w / 2, y: y(d.viewable, maxImpr),
          height: top + plotH - y(d.viewable, maxImpr), class: 'view' }));
      svg.append(g);
      points.push(`${x + step / 2},${y(d.clicks, maxClicks)}`);
      if (i % labelEvery === 0) {
        svg.append(el('svg:text', { x: x + step / 2, y: H - 8, 'text-anchor': 'middle' }, when));
      }
    });
    svg.append(el('svg:polyline', { points: points.join(' '), class: 'click' }));

    const key = (cls, text) => el('span', {}, el('i', { class: cls }), text);
    return el('figure', {}, svg, el('div', { class: 'legend' },
      key('impr', 'Impressions'), key('view', 'Impressions visibles'),
      key('click', 'Clics (échelle de droite)')));
  }

  // Distinct on white and for the common colour-vision deficiencies (Okabe and Ito).
  const PALETTE = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#56b4e9', '#000000'];

  // Click-through rate of each slot, day by day: one line per slot on one percent scale.
  // A day without impressions in a slot has no rate, so the line breaks there.
  function ctrChart(stats) {
    const days = everyDay(stats.from, stats.to, stats.days || []);
    const names = [...new Set(days.flatMap((d) => (d.slots || []).map((s) => s.slot)))].sort();
    const series = names.map((slot) => days.map((d) => {
      const s = (d.slots || []).find((x) => x.slot === slot);
      return { date: d.date, impressions: s ? s.impressions : 0, clicks: s ? s.clicks : 0 };
    }));
    const W = 720, H = 200, left = 52, right = 16, top = 12, bottom = 26;
    const plotW = W - left - right, plotH = H - top - bottom;
    const rates = series.flat().filter((p) => p.impressions > 0).map((p) => p.clicks / p.impressions);
    // A round top in tenths of a percent at least, so that tiny rates still get a scale.
    const max = niceCeiling(Math.max(0.001, ...rates) * 1000) / 1000;
    const step = plotW / Math.max(1, days.length);
    const x = (i) => left + i * step + step / 2;
    const y = (v) => top + plotH - (v / max) * plotH;
    const svg = el('svg:svg', { class: 'chart ctr', viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': 'Taux de clic par emplacement et par jour', 'data-ctr-chart': '' });
    [0, max / 2, max].forEach((v) => {
      svg.append(el('svg:line', { x1: left, x2: W - right, y1: y(v), y2: y(v), stroke: '#e3e3e3' }));
      svg.append(el('svg:text', { x: left - 6, y: y(v) + 4, 'text-anchor': 'end' }, percent.format(v)));
    });
    const labelEvery = Math.ceil(days.length / 10);
    days.forEach((d, i) => {
      if (i % labelEvery === 0) {
        svg.append(el('svg:text', { x: x(i), y: H - 8, 'text-anchor': 'middle' },
          shortDate.format(day(d.date))));
      }
    });
    series.forEach((points, n) => {
      const colour = PALETTE[n % PALETTE.length];
      let path = '';
      let drawing = false;
      const marks = [];
      points.forEach((p, i) => {
        if (!p.impressions) { drawing = false; return; }
        const rate = p.clicks / p.impressions;
        path += `${drawing ? 'L' : 'M'}${x(i).toFixed(1)},${y(rate).toFixed(1)} `;
        drawing = true;
        marks.push(el('svg:circle', { cx: x(i), cy: y(rate), r: 3, fill: colour,
          'data-date': p.date, 'data-value': String(rate) },
          el('svg:title', {}, `${names[n]}, ${shortDate.format(day(p.date))} : ` +
            `${percent.format(rate)} (${integer.format(p.clicks)} clics, ` +
            `${integer.format(p.impressions)} impressions)`)));
      });
      svg.append(el('svg:g', { 'data-slot': names[n] },
        el('svg:title', {}, `Taux de clic, ${names[n]}`),
        el('svg:path', { d: path.trim(), fill: 'none', stroke: colour, 'stroke-width': 2 }),
        ...marks));
    });
    const key = names.map((slot, n) => el('span', {},
      el('i', { class: 'swatch', 'data-colour': PALETTE[n % PALETTE.length] }), slot));
    const legend = el('div', { class: 'legend' }, ...key);
    // Swatch colours are set as properties, not inline style attributes the CSP would refuse.
    legend.querySelectorAll('i.swatch').forEach((i) => { i.style.background = i.dataset.colour; });
    return el('figure', {},
      el('figcaption', { class: 'chart-title' }, 'Taux de clic par emplacement'),
      svg, names.length ? legend
        : el('p', { class: 'period' }, 'Aucune impression sur la période.'));
  }

  // The export is fetched with the key (a plain link would carry none) and handed to the
  // browser as a file: a Blob URL clicked with `download`, which the page's CSP allows.
  async function downloadCsv(link) {
    const res = await fetch(link.href, {
      headers: { Authorization: 'Bearer ' + sessionStorage.getItem(KEY), Accept: 'text/csv' },
      cache: 'no-store',
    });
    if (res.status === 401) throw new Unauthorized();
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      throw new Error((body && body.error && body.error.message) || 'Erreur ' + res.status);
    }
    const named = /filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') || '');
    const url = URL.createObjectURL(await res.blob());
    const save = el('a', { href: url, download: named ? named[1] : 'regie.csv', hidden: '' });
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  function csvLink(c, stats) {
    const query = new URLSearchParams({ from: stats.from, to: stats.to });
    const link = el('a', { class: 'csv', 'data-csv': '',
      href: `/v1/campaigns/${encodeURIComponent(c.campaign_id)}/stats.csv?${query}` },
      'Télécharger (CSV)');
    link.addEventListener('click', (e) => {
      e.preventDefault();
      downloadCsv(link).catch((err) => {
        if (err instanceof Unauthorized) {
          logout();
          say('Clé d\'API refusée. Vérifiez-la et reconnectez-vous.', true);
        } else {
          say(err.message || 'Le serveur ne répond pas.', true);
        }
      });
    });
    return link;
  }

  function slotTable(slots) {
    const rows = (slots || []).map((s) => el('tr', { 'data-slot': s.slot },
      el('td', {}, s.slot),
      ...['served', 'impressions', 'viewable', 'clicks'].map((m) => metricCell('td', m, s[m])),
      metricCell('td', 'ctr', s.impressions ? s.clicks / s.impressions : 0)));
    if (!rows.length) {
      rows.push(el('tr', {}, el('td', { colspan: 6 }, 'Aucune diffusion sur la période.')));
    }
    return el('table', { 'data-slots': '' },
      el('caption', { hidden: '' }, 'Répartition par emplacement'),
      el('thead', {}, el('tr', {}, el('th', {}, 'Emplacement'),
        ...METRICS.map(([, label]) => el('th', {}, label)))),
      el('tbody', {}, ...rows));
  }

  // One line an advertiser can read: what was set aside as invalid over the
  // period, and why (in the line's tooltip and its details).
  function invalidLine(invalid) {
    const figures = INVALID.map(([m, one, many], i) => [
      i ? ', ' : '',
      el('span', { 'data-metric': m, 'data-value': String(invalid[m] || 0) },
        `${integer.format(invalid[m] || 0)} ${(invalid[m] || 0) > 1 ? many : one}`),
    ]).flat();
    const why = Object.entries(invalid.reasons || {})
      .map(([reason, t]) => [reason, (t.served || 0) + (t.impressions || 0) + (t.viewable || 0) + (t.clicks || 0)])
      .filter(([, n]) => n > 0)
      .map(([reason, n]) => `${REASONS[reason] || reason} : ${integer.format(n)}`);
    return el('p', { class: 'invalid', 'data-invalid': '',
      title: 'Trafic invalide (IAB/MRC) : compté à part, jamais facturé ni décompté des plafonds.' },
    el('strong', {}, 'Trafic invalide écarté : '), ...figures,
    why.length ? ` (${why.join(' ; ')})` : '', '.');
  }

  function campaignSection(c, stats) {
    const lifetime = c.totals || {};
    const section = el('section', { class: 'campaign', 'data-campaign': c.campaign_id,
      'data-status': c.status },
      el('header', {},
        el('h2', {}, c.campaign_id),
        el('span', { class: 'badge ' + c.status }, STATUS[c.status] || c.status),
        el('span', { class: 'period', 'data-from': stats.from, 'data-to': stats.to },
          `du ${longDate.format(day(stats.from))} au ${longDate.format(day(stats.to))}`),
        el('span', { class: 'lifetime' }, 'Depuis le lancement : ',
          metricCell('span', 'impressions', lifetime.impressions, { 'data-lifetime': '' }),
          lifetime.impressions > 1 ? ' impressions, ' : ' impression, ',
          metricCell('span', 'clicks', lifetime.clicks, { 'data-lifetime': '' }),
          lifetime.clicks > 1 ? ' clics' : ' clic'),
        csvLink(c, stats)),
      el('div', { class: 'tiles', 'data-totals': '' },
        ...METRICS.map(([m, label]) => el('div', { class: 'tile' },
          el('span', { class: 'label' }, label),
          metricCell('span', m, (stats.totals || {})[m], { class: 'value' })))),
      invalidLine((stats.totals || {}).invalid || {}),
      chart(stats),
      ctrChart(stats),
      slotTable(stats.slots));
    return section;
  }

  async function load() {
    const from = $('from').value, to = $('to').value;
    const query = new URLSearchParams();
    if (from) query.set('from', from);
    if (to) query.set('to', to);
    const qs = query.toString() ? '?' + query : '';
    say('Chargement…');
    try {
      const me = await api('/v1/advertisers/me/campaigns');
      $('advertiser-id').textContent = me.advertiser_id;
      $('advertiser').hidden = false;
      const sections = await Promise.all((me.campaigns || []).map(async (c) => {
        try {
          const stats = await api(`/v1/campaigns/${encodeURIComponent(c.campaign_id)}/stats${qs}`);
          return campaignSection(c, stats);
        } catch (e) {
          if (e instanceof Unauthorized) throw e;
          return el('section', { class: 'campaign', 'data-campaign': c.campaign_id },
            el('h2', {}, c.campaign_id), el('p', { class: 'error-text' }, e.message));
        }
      }));
      $('campaigns').replaceChildren(...sections);
      say(sections.length ? '' : 'Aucune campagne pour cet annonceur.');
      document.body.setAttribute('data-loaded', new Date().toISOString());
    } catch (e) {
      if (e instanceof Unauthorized) {
        logout();
        say('Clé d\'API refusée. Vérifiez-la et reconnectez-vous.', true);
      } else {
        say(e.message || 'Le serveur ne répond pas.', true);
      }
    }
  }

  function showSession(on) {
    $('login-panel').hidden = on;
    $('session-bar').hidden = !on;
  }

  function logout() {
    sessionStorage.removeItem(KEY);
    $('campaigns').replaceChildren();
    $('advertiser').hidden = true;
    say('');
    showSession(false);
  }

  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $('api-key').value.trim());
    $('api-key').value = '';
    showSession(true);
    load();
  });
  $('period-form').addEventListener('submit', (e) => { e.preventDefault(); load(); });
  $('logout').addEventListener('click', logout);

  if (sessionStorage.getItem(KEY)) {
    showSession(true);
    load();
  } else {
    showSession(false);
  }
})();
