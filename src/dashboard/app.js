// gdq's dashboard. Every value that came from a finding is attacker-influenced text: it
// reaches the page only through textContent and attributes set by the DOM API (never
// innerHTML), and charts draw it on a canvas (tooltips too: renderMode richText).
(function () {
  'use strict';
  const COLORS = { Low: '#5b8def', Medium: '#f0b429', High: '#e8590c', Critical: '#c92a2a' };
  const LABELS = ['Low', 'Medium', 'High', 'Critical'];
  const charts = [];

  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.entries(props || {}).forEach(([k, v]) => {
      if (k === 'text') node.textContent = v;
      else if (k === 'class') node.className = v;
      else node.setAttribute(k, v);
    });
    (children || []).forEach((c) => node.appendChild(c));
    return node;
  }

  function fmt(v) {
    if (v === null || v === undefined) return '';
    return String(v);
  }

  function table(columns, rows, link) {
    const head = el('tr', {}, columns.map((c) => el('th', { text: c })));
    const body = rows.map((r) => el('tr', {}, columns.map((c) => {
      const cell = el('td');
      const value = fmt(r[c]);
      const href = link && link(c, r);
      if (href) cell.appendChild(el('a', { href: href, target: '_blank', rel: 'noopener', text: value }));
      else cell.textContent = value;
      return cell;
    })));
    return el('table', {}, [el('thead', {}, [head]), el('tbody', {}, body)]);
  }

  function panel(id, title, sub, wide) {
    const section = el('section', { class: 'panel' + (wide ? ' wide' : ''), id: 'panel-' + id });
    section.appendChild(el('h2', { text: title }));
    section.appendChild(el('p', { class: 'sub', text: sub }));
    document.getElementById('panels').appendChild(section);
    return section;
  }

  function chart(section, option, points) {
    const div = el('div', { class: 'chart' });
    section.appendChild(div);
    section.dataset.points = String(points);
    const c = echarts.init(div, null, { renderer: 'canvas' });
    c.on('finished', () => { section.dataset.drawn = 'true'; });
    option.animation = false;
    option.tooltip = Object.assign({ renderMode: 'richText', confine: true }, option.tooltip || {});
    c.setOption(option);
    charts.push(c);
  }

  function sum(rows, key) { return rows.reduce((a, r) => a + (Number(r[key]) || 0), 0); }

  function stacked(rows, xKey, seriesKey, valueKey) {
    const xs = [...new Set(rows.map((r) => fmt(r[xKey])))];
    const index = new Map(xs.map((x, i) => [x, i]));
    const series = LABELS.filter((l) => rows.some((r) => r[seriesKey] === l)).map((label) => {
      const values = xs.map(() => 0);
      rows.filter((r) => r[seriesKey] === label).forEach((r) => { values[index.get(fmt(r[xKey]))] += Number(r[valueKey]); });
      return { name: label, type: 'bar', stack: 'all', data: values, itemStyle: { color: COLORS[label] } };
    });
    return { xs, series };
  }

  function render(data) {
    charts.forEach((c) => c.dispose());
    charts.length = 0;
    const p = data.panels;
    const f = data.filters;
    document.getElementById('scope').textContent = 'warehouse ' + data.warehouse + ' · generated ' +
      new Date(data.generated_at_ms).toISOString() +
      (f.since_ms ? ' · since ' + new Date(f.since_ms).toISOString() : '') +
      (f.until_ms ? ' · until ' + new Date(f.until_ms).toISOString() : '') +
      (f.accounts.length ? ' · accounts ' + f.accounts.join(', ') : '') +
      (f.regions.length ? ' · regions ' + f.regions.join(', ') : '') +
      (f.min_severity ? ' · severity ≥ ' + f.min_severity : '');

    const t = p.totals.rows[0] || {};
    const totals = document.getElementById('totals');
    totals.replaceChildren();
    [['findings', t.findings], ['versions', (p.versions.rows[0] || {}).versions],
     ['high or critical', t.high_or_critical], ['open high or critical', t.open_high_or_critical],
     ['accounts', t.accounts], ['regions', t.regions]].forEach(([what, n], i) => {
      totals.appendChild(el('div', { class: 'total', id: 'total-' + what.replace(/ /g, '-') }, [
        el('div', { class: 'n', text: fmt(n === undefined ? 0 : n) }), el('div', { class: 'what', text: what })]));
    });

    const panels = document.getElementById('panels');
    panels.replaceChildren();

    const daily = p['daily-severity'].rows;
    const s1 = panel('severity-over-time', 'Severity over time', sum(daily, 'findings') + ' finding-days, by the label of each day\u2019s newest version', true);
    const d = stacked(daily.map((r) => Object.assign({}, r, { day: fmt(r.day).slice(0, 10) })), 'day', 'severity_label', 'findings');
    chart(s1, { legend: {}, grid: { left: 50, right: 20, bottom: 60 }, xAxis: { type: 'category', data: d.xs }, yAxis: { type: 'value' }, dataZoom: [{ type: 'slider' }], series: d.series }, daily.length);

    const bands = p['severity-bands'].rows;
    const s2 = panel('by-severity', 'Findings by severity', sum(bands, 'findings') + ' findings');
    chart(s2, { xAxis: { type: 'category', data: bands.map((r) => r.band) }, yAxis: { type: 'value' },
      series: [{ type: 'bar', data: bands.map((r) => ({ value: r.findings, itemStyle: { color: COLORS[r.band] } })), label: { show: true, position: 'top' } }] }, bands.filter((r) => r.findings > 0).length);

    const types = p['top-types'].rows.slice(0, 15).reverse();
    const s3 = panel('top-types', 'Top finding types', p['top-types'].rows.length + ' types shown of the top 50');
    chart(s3, { grid: { left: 260, right: 30 }, xAxis: { type: 'value' }, yAxis: { type: 'category', data: types.map((r) => r.type), axisLabel: { width: 250, overflow: 'truncate' } },
      series: [{ type: 'bar', data: types.map((r) => r.findings), itemStyle: { color: '#3d5a98' } }] }, types.length);

    const ar = p['account-region'].rows;
    const accounts = [...new Set(ar.map((r) => r.account_id))];
    const regions = [...new Set(ar.map((r) => r.region))];
    const s4 = panel('account-region', 'Accounts × regions', accounts.length + ' accounts, ' + regions.length + ' regions');
    chart(s4, { grid: { left: 110, right: 20, bottom: 70 }, xAxis: { type: 'category', data: regions }, yAxis: { type: 'category', data: accounts },
      visualMap: { min: 0, max: Math.max(1, ...ar.map((r) => r.findings)), calculable: true, orient: 'horizontal', left: 'center', bottom: 0, inRange: { color: ['#e8eefc', '#c92a2a'] } },
      series: [{ type: 'heatmap', data: ar.map((r) => [regions.indexOf(r.region), accounts.indexOf(r.account_id), r.findings]), label: { show: true } }] }, ar.length);

    const rs = p['resource-severity'].rows.map((r) => Object.assign({}, r, { resource_type: fmt(r.resource_type) || '(none)' }));
    const s5 = panel('resource-severity', 'Resource type × severity', [...new Set(rs.map((r) => r.resource_type))].length + ' resource types');
    const rsd = stacked(rs, 'resource_type', 'severity_label', 'findings');
    chart(s5, { legend: { top: 0 }, grid: { left: 50, right: 20, top: 40, bottom: 80 }, xAxis: { type: 'category', data: rsd.xs, axisLabel: { rotate: 30 } }, yAxis: { type: 'value' }, series: rsd.series }, rs.length);

    const remote = p['top-remote'].rows.slice(0, 15).reverse();
    const s6 = panel('top-remote', 'Top remote IPs', p['top-remote'].rows.length + ' addresses shown of the top 50');
    chart(s6, { grid: { left: 130, right: 30 }, xAxis: { type: 'value' }, yAxis: { type: 'category', data: remote.map((r) => r.remote_ip + (r.remote_country ? ' (' + r.remote_country + ')' : '')) },
      series: [{ type: 'bar', data: remote.map((r) => r.findings), itemStyle: { color: '#7048e8' } }] }, remote.length);

    const countries = p['top-countries'].rows.slice().reverse();
    const s7 = panel('top-countries', 'Countries of remote IPs', countries.length + ' countries');
    chart(s7, { grid: { left: 130, right: 30 }, xAxis: { type: 'value' }, yAxis: { type: 'category', data: countries.map((r) => r.remote_country) },
      series: [{ type: 'bar', data: countries.map((r) => r.findings), itemStyle: { color: '#2b8a3e' } }] }, countries.length);

    const open = p['open-past-age'].rows;
    const openTotal = p['open-past-age'].total;
    const s8 = panel('open-past-age', 'Open High and Critical findings past their age limit', openTotal + ' findings' + (openTotal > open.length ? ' (the ' + open.length + ' most severe and oldest shown)' : ''), true);
    s8.dataset.rows = String(openTotal);
    s8.dataset.shown = String(open.length);
    const consoleLink = (c, r) => (c === 'id' && typeof r.console_url === 'string' && r.console_url.startsWith('https://console.aws.amazon.com/guardduty/')) ? r.console_url : null;
    s8.appendChild(el('div', { class: 'scroll' }, [table(['id', 'type', 'severity', 'account_id', 'region', 'created_at', 'title'], open, consoleLink)]));

    const fresh = p['new-types'].rows;
    const s9 = panel('new-types', 'New finding types', fresh.length + ' types first seen in the window', true);
    s9.dataset.rows = String(fresh.length);
    s9.appendChild(el('div', { class: 'scroll' }, [table(['type', 'first_seen', 'findings', 'max_severity'], fresh)]));
    document.body.dataset.rendered = 'true';
  }

  function query(form) {
    const params = new URLSearchParams();
    new FormData(form).forEach((v, k) => {
      if (!v) return;
      if (k === 'account' || k === 'region') String(v).split(',').map((x) => x.trim()).filter(Boolean).forEach((x) => params.append(k, x));
      else params.append(k, v);
    });
    return params.toString();
  }

  render(JSON.parse(document.getElementById('gdq-data').textContent));

  if (document.body.dataset.live === '1') {
    const filters = document.getElementById('filters');
    const sql = document.getElementById('sql');
    filters.hidden = false;
    sql.hidden = false;
    filters.addEventListener('submit', (e) => {
      e.preventDefault();
      fetch('/api/dashboard?' + query(filters)).then((r) => r.json()).then((d) => {
        if (d.error) document.getElementById('scope').textContent = d.error; else render(d);
      });
    });
    sql.addEventListener('submit', (e) => {
      e.preventDefault();
      const q = new FormData(sql).get('q');
      fetch('/api/sql?q=' + encodeURIComponent(q)).then((r) => r.json()).then((d) => {
        const error = document.getElementById('sql-error');
        const result = document.getElementById('sql-result');
        result.replaceChildren();
        error.textContent = d.error || '';
        if (!d.error) result.appendChild(table(d.columns, d.rows));
        sql.dataset.answered = 'true';
      });
    });
  }
  window.addEventListener('resize', () => charts.forEach((c) => c.resize()));
}());
