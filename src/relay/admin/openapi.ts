// The OpenAPI 3.1 description of the REST API, built from the route table the
// server routes by, so the document and the server cannot drift apart.
import { API_BASE, ROUTES } from '../../admin/api-types.js';
import { VERSION } from '../../version.js';

type Json = Record<string, unknown>;

let cached: Json | undefined;

export function openApiDocument(): Json {
  if (cached) return cached;
  const paths: Record<string, Json> = {};
  for (const r of ROUTES) {
    const path = `${API_BASE}${r.path}`;
    const params = [...r.path.matchAll(/\{([a-z]+)\}/gi)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    const op: Json = {
      operationId: r.op,
      summary: r.summary,
      tags: [r.path.split('/')[1]],
      security: [{ bearer: [] }],
      ...(params.length ? { parameters: params } : {}),
      ...(r.args.includes('body')
        ? { requestBody: { required: true, content: { 'application/json': { schema: { type: 'object' } } } } }
        : {}),
      responses: {
        [String(r.status ?? 200)]: { description: 'success' },
        default: { $ref: '#/components/responses/Error' },
      },
      'x-proxyctl-role': r.write ? 'admin' : 'reader',
    };
    (paths[path] ??= {})[r.method.toLowerCase()] = op;
  }
  cached = {
    openapi: '3.1.0',
    info: { title: 'proxyctl administration API', version: VERSION },
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      responses: {
        Error: {
          description: 'a refusal',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        },
      },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: {
                code: { type: 'string' },
                message: { type: 'string' },
                issues: {
                  type: 'array',
                  items: {
                    type: 'object',
                    properties: { path: { type: 'string' }, found: { type: 'string' }, expected: { type: 'string' } },
                  },
                },
              },
            },
          },
        },
      },
    },
  };
  return cached;
}
