// Validates Kubernetes documents against the API schemas that the
// kubernetes-models package generates from Kubernetes' OpenAPI spec. That
// package is ESM-only and jest runs CommonJS, so k8s.test.ts runs this file
// in its own node: documents as a JSON array on stdin, out a JSON array of
// { index, kind, name, error } (error null when the document is valid).
import { readFileSync } from 'node:fs';

const documents = JSON.parse(readFileSync(0, 'utf8'));
const results = [];
for (const [index, doc] of documents.entries()) {
  const { apiVersion, kind } = doc;
  let error = null;
  try {
    const group = await import(`kubernetes-models/${apiVersion}`);
    const Model = group[kind];
    if (!Model) throw new Error(`kubernetes-models has no ${kind} in ${apiVersion}`);
    new Model(doc).validate();
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
  }
  results.push({ index, kind, name: doc.metadata?.name, error });
}
process.stdout.write(JSON.stringify(results));
