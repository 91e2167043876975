//! The small HTML status page: routes and per-server health, rendered server-side so it works
//! without JavaScript, and refreshed in the browser from `/servers` every two seconds.

use std::fmt::Write as _;

use crate::proxy::runtime::state::Shared;

pub fn render(shared: &Shared) -> String {
    let snap = shared.snapshot.load();
    let mut routes = String::new();
    for (r, cfg) in snap.routes.iter().zip(&snap.config.routes) {
        let _ = writeln!(
            routes,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.name),
            esc(cfg.host.as_deref().unwrap_or("*")),
            esc(&cfg.path),
            if cfg.strip_prefix { "yes" } else { "no" },
            esc(&cfg.cluster)
        );
    }
    let mut servers = String::new();
    for s in crate::proxy::serve::view::servers(shared) {
        let health = if s.up { "up" } else { "down" };
        let _ = writeln!(
            servers,
            "<tr class=\"{health}\" data-server=\"{}/{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"health\">{health}</td><td>{:?}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.cluster),
            esc(&s.address),
            esc(&s.cluster),
            esc(&s.address),
            s.weight,
            s.state,
            s.circuit,
            s.inflight
        );
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>itsup proxy status</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: .3em .8em; text-align: left; }}
tr.up td.health {{ color: #070; }} tr.down td.health {{ color: #b00; font-weight: bold; }}
</style></head><body>
<h1>itsup proxy</h1>
<h2>Routes</h2>
<table id="routes"><tr><th>Route</th><th>Host</th><th>Path</th><th>Strip</th><th>Cluster</th></tr>
{routes}</table>
<h2>Servers</h2>
<table id="servers"><thead><tr><th>Cluster</th><th>Server</th><th>Weight</th><th>Health</th><th>Admin</th><th>Circuit</th><th>In flight</th></tr></thead>
<tbody>
{servers}</tbody></table>
<p id="updated">rendered by server</p>
<script>
async function refresh() {{
  try {{
    const r = await fetch('/servers');
    const list = await r.json();
    const body = document.querySelector('#servers tbody');
    body.replaceChildren(...list.map(s => {{
      const tr = document.createElement('tr');
      const health = s.up ? 'up' : 'down';
      tr.className = health;
      tr.dataset.server = s.cluster + '/' + s.address;
      for (const [v, cls] of [[s.cluster], [s.address], [s.weight], [health, 'health'], [s.state], [s.circuit], [s.inflight]]) {{
        const td = document.createElement('td');
        td.textContent = String(v);
        if (cls) td.className = cls;
        tr.appendChild(td);
      }}
      return tr;
    }}));
    document.getElementById('updated').textContent = 'live: ' + list.length + ' servers';
  }} catch (e) {{
    document.getElementById('updated').textContent = 'refresh failed: ' + e;
  }}
}}
refresh();
setInterval(refresh, 2000);
</script>
</body></html>
"#
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
