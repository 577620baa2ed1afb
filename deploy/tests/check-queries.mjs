// Parses every PromQL, LogQL and TraceQL query of the Grafana kit with the grammars Grafana's
// own query editors use (@prometheus-io/lezer-promql, @grafana/lezer-logql,
// @grafana/lezer-traceql) and fails on any syntax error.
//
//   node deploy/tests/check-queries.mjs            # the repository's dashboards, provisioning,
//                                                  # Prometheus rules and docs
//   node deploy/tests/check-queries.mjs FILE...    # only these files
//
// A file's kind follows from its path and content: a dashboard (*.json), Grafana alert rules,
// Grafana datasources or Prometheus rules (*.yaml, *.yml), or Markdown whose ```promql,
// ```logql and ```traceql blocks are queries. Prints each error with its origin, then one
// summary line; exits 1 on any error.

import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join, dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { parser as promql } from "@prometheus-io/lezer-promql";
import { parser as logql } from "@grafana/lezer-logql";
import { parser as traceql } from "@grafana/lezer-traceql";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PARSERS = { promql, logql, traceql };
const NAMES = { promql: "PromQL", logql: "LogQL", traceql: "TraceQL" };

// What Grafana substitutes before a query reaches its datasource, with every variable at "All".
function interpolate(expr) {
  return expr
    .replaceAll("$__rate_interval", "1m")
    .replaceAll("$__range", "1h")
    .replaceAll("$__interval", "15s")
    .replaceAll("$__auto", "1m")
    // tracesToMetrics: the span's tags as label matchers.
    .replaceAll("$__tags", 'agent_id="planner"');
}

// Provisioning files are expanded by Grafana first: `$$` is a literal `$`.
function unescapeProvisioning(value) {
  return typeof value === "string" ? value.replaceAll("$$", "$") : value;
}

/** One syntax problem of `expr` in `lang`, or null. */
function syntaxError(lang, expr) {
  if (typeof expr !== "string" || expr.trim() === "") return "empty query";
  const tree = PARSERS[lang].parse(expr);
  let error = null;
  tree.iterate({
    enter(node) {
      if (error === null && node.type.isError) {
        const near = expr.slice(Math.max(0, node.from - 10), node.from + 20);
        error = `syntax error at offset ${node.from} (near ${JSON.stringify(near)})`;
      }
    },
  });
  if (error === null && tree.length !== expr.length) error = `unparsed input after offset ${tree.length}`;
  return error;
}

const queries = [];
const problems = [];

function add(lang, expr, origin) {
  queries.push({ lang, expr, origin });
}

// ---- dashboards ------------------------------------------------------------------------------

const DATASOURCE_LANG = { prometheus: "promql", loki: "logql", tempo: "traceql" };
const UID_TYPE = { mimir: "prometheus", loki: "loki", tempo: "tempo" };

function datasourceType(ref, fallback) {
  const r = ref ?? fallback;
  if (!r) return null;
  if (typeof r === "string") return UID_TYPE[r] ?? r;
  return r.type ?? UID_TYPE[r.uid] ?? null;
}

// Prometheus template-variable functions (Grafana docs, "Prometheus template variables").
function variableQuery(query, origin) {
  const text = typeof query === "string" ? query : query?.query;
  if (typeof text !== "string" || text.trim() === "") return;
  let m;
  if ((m = /^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$/s.exec(text))) {
    add("promql", m[1], origin);
  } else if ((m = /^\s*query_result\((.*)\)\s*$/s.exec(text))) {
    add("promql", m[1], origin);
  } else if (/^\s*(label_names|metrics|label_values)\(/.test(text)) {
    // label_names(), metrics(regex) and label_values(label) take no PromQL.
  } else {
    problems.push(`${origin}: not a Prometheus variable query: ${JSON.stringify(text)}`);
  }
}

function dashboard(path, text) {
  const where = relative(ROOT, path);
  let dash;
  try {
    dash = JSON.parse(text);
  } catch (e) {
    problems.push(`${where}: not JSON: ${e.message}`);
    return;
  }
  const panels = [];
  for (const p of dash.panels ?? []) {
    panels.push(p);
    for (const inner of p.panels ?? []) panels.push(inner);
  }
  for (const panel of panels) {
    for (const target of panel.targets ?? []) {
      const origin = `${where}: panel ${JSON.stringify(panel.title ?? panel.id)} ${target.refId ?? ""}`.trim();
      const type = datasourceType(target.datasource, panel.datasource);
      const lang = DATASOURCE_LANG[type];
      if (!lang) {
        problems.push(`${origin}: datasource ${JSON.stringify(type)} has no known query language`);
        continue;
      }
      add(lang, lang === "traceql" ? target.query : target.expr, origin);
    }
  }
  for (const v of dash.templating?.list ?? []) {
    if (v.type !== "query") continue;
    const origin = `${where}: variable ${v.name}`;
    if (datasourceType(v.datasource) !== "prometheus") {
      problems.push(`${origin}: only Prometheus variable queries are checked`);
      continue;
    }
    variableQuery(v.query, origin);
  }
  for (const a of dash.annotations?.list ?? []) {
    const lang = DATASOURCE_LANG[datasourceType(a.datasource)];
    const expr = a.expr ?? a.target?.expr;
    if (lang && expr) add(lang, expr, `${where}: annotation ${a.name}`);
  }
}

// ---- YAML: Grafana alert rules and datasources, Prometheus rules -----------------------------

function yamlFile(path, text) {
  const where = relative(ROOT, path);
  let doc;
  try {
    doc = parseYaml(text);
  } catch (e) {
    problems.push(`${where}: not YAML: ${e.message}`);
    return;
  }
  if (Array.isArray(doc?.datasources)) return datasources(where, doc);
  if (Array.isArray(doc?.groups)) {
    const grafana = doc.groups.some((g) => (g.rules ?? []).some((r) => Array.isArray(r.data)));
    return grafana ? grafanaRules(where, doc) : prometheusRules(where, doc);
  }
  // Other provisioning (dashboard providers, contact points) holds no query.
}

function prometheusRules(where, doc) {
  for (const g of doc.groups) {
    for (const r of g.rules ?? []) {
      const name = r.record ?? r.alert;
      add("promql", r.expr, `${where}: ${name}`);
      if (r.annotations?.watcher_query) add("promql", r.annotations.watcher_query, `${where}: ${name} watcher_query`);
    }
  }
}

function grafanaRules(where, doc) {
  for (const g of doc.groups) {
    for (const r of g.rules ?? []) {
      for (const d of r.data ?? []) {
        const origin = `${where}: ${r.title} ${d.refId}`;
        if (d.datasourceUid === "__expr__") continue; // server-side math, no PromQL
        const lang = DATASOURCE_LANG[UID_TYPE[d.datasourceUid]];
        if (!lang) {
          problems.push(`${origin}: datasource ${JSON.stringify(d.datasourceUid)} has no known query language`);
          continue;
        }
        add(lang, unescapeProvisioning(lang === "traceql" ? d.model?.query : d.model?.expr), origin);
      }
      const wq = r.annotations?.watcher_query;
      if (wq) add("promql", unescapeProvisioning(wq), `${where}: ${r.title} watcher_query`);
    }
  }
}

function datasources(where, doc) {
  for (const ds of doc.datasources) {
    const j = ds.jsonData ?? {};
    for (const q of j.tracesToMetrics?.queries ?? []) {
      add("promql", unescapeProvisioning(q.query), `${where}: ${ds.name} tracesToMetrics ${q.name}`);
    }
    if (j.tracesToLogsV2?.customQuery) {
      add("logql", unescapeProvisioning(j.tracesToLogsV2.query), `${where}: ${ds.name} tracesToLogsV2`);
    }
  }
}

// ---- Markdown ----------------------------------------------------------------------------------

function markdown(path, text) {
  const where = relative(ROOT, path);
  const fence = /^```(promql|logql|traceql)\s*\n([\s\S]*?)^```/gm;
  let m;
  while ((m = fence.exec(text))) {
    const line = text.slice(0, m.index).split("\n").length;
    // One query per block; `#` lines are comments.
    const expr = m[2].split("\n").filter((l) => !l.trimStart().startsWith("#")).join("\n").trim();
    add(m[1], expr, `${where}:${line}`);
  }
}

// ---- which files ---------------------------------------------------------------------------------

function filesIn(dir, ...exts) {
  const abs = join(ROOT, dir);
  if (!existsSync(abs)) return [];
  return readdirSync(abs, { recursive: true })
    .filter((f) => exts.some((e) => f.endsWith(e)))
    .sort()
    .map((f) => join(abs, f));
}

function defaultFiles() {
  return [
    ...filesIn("deploy/grafana/dashboards", ".json"),
    ...filesIn("deploy/grafana/provisioning", ".yaml", ".yml"),
    ...filesIn("deploy/prometheus/rules", ".yaml", ".yml"),
    ...filesIn("docs", ".md"),
    join(ROOT, "README.md"),
  ];
}

const args = process.argv.slice(2);
const files = args.length ? args.map((a) => resolve(a)) : defaultFiles();
for (const path of files) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    problems.push(`${path}: ${e.message}`);
    continue;
  }
  if (path.endsWith(".json")) dashboard(path, text);
  else if (path.endsWith(".yaml") || path.endsWith(".yml")) yamlFile(path, text);
  else if (path.endsWith(".md")) markdown(path, text);
  else problems.push(`${path}: not a dashboard, YAML or Markdown file`);
}

const counts = { promql: 0, logql: 0, traceql: 0 };
for (const q of queries) {
  counts[q.lang] += 1;
  const error = syntaxError(q.lang, interpolate(q.expr ?? ""));
  if (error) problems.push(`${q.origin}: ${NAMES[q.lang]} ${error}: ${q.expr}`);
}
for (const p of problems) console.error(p);
console.log(
  `parsed ${queries.length} queries in ${files.length} files: ${counts.promql} PromQL, ` +
    `${counts.logql} LogQL, ${counts.traceql} TraceQL; ${problems.length} errors`,
);
process.exit(problems.length ? 1 : 0);
