// Writes the JSON Schema the dashboards in deploy/grafana/dashboards/ are validated against
// (`check-jsonschema --schemafile`), derived from @grafana/schema, the package of types Grafana
// generates from its dashboard schema (the CUE "kinds" of the Grafana repository). The package
// ships TypeScript declarations, not JSON Schema; ts-json-schema-generator turns them into
// JSON Schema (draft-07), with the same pinned versions every time (deploy/tests/package.json).
//
//   node deploy/tests/dashboard-schema.mjs OUT.json
//
// * The dashboard: the `Dashboard` type of the classic dashboard JSON model (schemaVersion 39+,
//   `raw/dashboard/x`). Objects are closed: a property the type does not declare is an error,
//   which catches misspelt keys Grafana would silently ignore.
// * Each panel's `options` and `fieldConfig.defaults.custom`: the `Options` and `FieldConfig`
//   types of its panel plugin (`raw/composable/<plugin>/panelcfg/x`), when the package has them.
//   Their `required` lists are dropped: Grafana fills missing panel options from the plugin's
//   defaults, so only the names and types of the options given are checked.

import { writeFileSync, readdirSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { createGenerator, createProgram } from "ts-json-schema-generator";

const HERE = dirname(fileURLToPath(import.meta.url));
const RAW = join(HERE, "node_modules", "@grafana", "schema", "dist", "types", "raw");
const CONFIG = {
  tsconfig: join(HERE, "tsconfig.json"),
  skipTypeCheck: true,
  additionalProperties: false,
  expose: "export",
  topRef: true,
};

function declarationFile(dir) {
  return join(dir, readdirSync(dir).find((f) => f.endsWith(".d.ts")));
}

const dashboardFile = join(RAW, "dashboard", "x", "types.gen.d.ts");
const pluginFiles = readdirSync(join(RAW, "composable"))
  .sort()
  .map((plugin) => [plugin, join(RAW, "composable", plugin, "panelcfg", "x")])
  .filter(([, dir]) => existsSync(dir))
  .map(([plugin, dir]) => [plugin, declarationFile(dir)]);
// One TypeScript program for every file: building it is what takes the time.
const program = createProgram({ ...CONFIG, path: join(RAW, "{dashboard/x,composable/*/panelcfg/x}", "*.d.ts") });
const generator = createGenerator({ ...CONFIG, tsProgram: program });

const skipped = [];

/** The schema of interface `name` declared in `file`, or null when the file has none (or the
 * generator cannot express it: then it is listed as skipped). */
function generate(file, name, label = name) {
  const source = program.getSourceFile(file);
  const node = source?.statements.find(
    (s) => (ts.isInterfaceDeclaration(s) || ts.isTypeAliasDeclaration(s)) && s.name.text === name,
  );
  if (!node) return null;
  try {
    return generator.createSchemaFromNodes([node]);
  } catch (e) {
    skipped.push(`${label} (${e.message})`);
    return null;
  }
}

function dropRequired(node) {
  if (Array.isArray(node)) return node.forEach(dropRequired);
  if (node === null || typeof node !== "object") return;
  delete node.required;
  Object.values(node).forEach(dropRequired);
}

/** Moves `schema`'s definitions under `prefix`, rewriting its references. */
function prefixed(schema, prefix) {
  const text = JSON.stringify(schema.definitions).replaceAll('"#/definitions/', `"#/definitions/${prefix}`);
  return Object.fromEntries(Object.entries(JSON.parse(text)).map(([k, v]) => [prefix + k, v]));
}

const out = process.argv[2];
if (!out) {
  console.error("usage: node dashboard-schema.mjs OUT.json");
  process.exit(2);
}

const schema = generate(dashboardFile, "Dashboard");
if (!schema) {
  console.error(`no Dashboard type in ${dashboardFile}: ${skipped.join("; ")}`);
  process.exit(1);
}
schema.$comment =
  "Derived from @grafana/schema (raw/dashboard/x, raw/composable/*/panelcfg/x) by deploy/tests/dashboard-schema.mjs";
const panelRules = [];
const plugins = [];
for (const [plugin, file] of pluginFiles) {
  const then = { properties: {} };
  const options = generate(file, "Options", `${plugin}.Options`);
  const fieldConfig = generate(file, "FieldConfig", `${plugin}.FieldConfig`);
  for (const part of [options, fieldConfig]) {
    if (!part) continue;
    dropRequired(part.definitions);
    Object.assign(schema.definitions, prefixed(part, `${plugin}.`));
  }
  if (options) then.properties.options = { $ref: `#/definitions/${plugin}.Options` };
  if (fieldConfig) {
    then.properties.fieldConfig = {
      properties: { defaults: { properties: { custom: { $ref: `#/definitions/${plugin}.FieldConfig` } } } },
    };
  }
  if (options || fieldConfig) {
    panelRules.push({ if: { properties: { type: { const: plugin } }, required: ["type"] }, then });
    plugins.push(plugin);
  }
}
schema.definitions.Panel.allOf = panelRules;
writeFileSync(out, JSON.stringify(schema, null, 1));
console.log(`wrote ${out}: Dashboard, and the options of ${plugins.length} panel plugins (${plugins.join(", ")})`);
if (skipped.length) console.log(`not expressible as JSON Schema, left unchecked: ${skipped.join("; ")}`);
