// Runs a scenario of named steps with the official Neo4j JavaScript driver and prints one JSON
// document with each step's outcome (tests/drivers/README.md gives the input and output).
//
//   node scenario.mjs [--check] < scenario.json
//
// --check only validates the input. Exit 0 whatever the server answers (each step reports its
// own error code); exit 2 when the input itself is malformed.
import { createRequire } from 'node:module'
import neo4j from 'neo4j-driver'

const VERSION = createRequire(import.meta.url)('neo4j-driver/package.json').version

const KINDS = {
  autocommit: 'statement',
  execute_query: 'statement',
  write_tx: 'statements',
  rollback_tx: 'statements',
  read_tx: 'statements',
  verify_connectivity: 'nothing',
  expired_token_refresh: 'statement'
}
// Short enough that a refused or broken server fails a test quickly, not after 30 s of retries.
const CONFIG = {
  useBigInt: true,
  maxTransactionRetryTime: 5000,
  connectionTimeout: 10000,
  connectionAcquisitionTimeout: 15000,
  logging: { level: 'error', logger: () => {} }
}

class MalformedInput extends Error {}

function expect (condition, message) {
  if (!condition) throw new MalformedInput(message)
}

function isObject (value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function checkStatement (where, spec) {
  expect(isObject(spec) && typeof spec.statement === 'string', `${where}: needs a statement`)
  expect(spec.params === undefined || isObject(spec.params), `${where}: params must be a map`)
}

function checkInput (input) {
  expect(isObject(input), 'the input must be a JSON object')
  expect(typeof input.uri === 'string', 'uri must be a string')
  expect(input.database === undefined || typeof input.database === 'string', 'database')
  const auth = input.auth
  expect(isObject(auth), 'auth must be a map')
  if (auth.scheme === 'basic') {
    expect(typeof auth.user === 'string' && typeof auth.password === 'string', 'basic auth')
  } else {
    expect(auth.scheme === 'bearer' && typeof auth.token === 'string', 'auth scheme')
  }
  expect(Array.isArray(input.steps), 'steps must be a list')
  input.steps.forEach((step, index) => {
    const where = `step ${index}`
    expect(isObject(step) && step.step in KINDS, `${where}: unknown step ${step?.step}`)
    expect(step.name === undefined || typeof step.name === 'string', `${where}: name`)
    expect(
      step.routing === undefined || step.routing === 'read' || step.routing === 'write',
      `${where}: routing is read or write`
    )
    if (KINDS[step.step] === 'statement') checkStatement(where, step)
    if (KINDS[step.step] === 'statements') {
      expect(Array.isArray(step.statements) && step.statements.length > 0, `${where}: statements`)
      step.statements.forEach((spec, i) => checkStatement(`${where}.${i}`, spec))
    }
    if (step.step === 'expired_token_refresh') {
      expect(
        Array.isArray(step.tokens) && step.tokens.length >= 2 &&
          step.tokens.every((token) => typeof token === 'string'),
        `${where}: tokens must list at least two tokens`
      )
    }
  })
}

// JSON has one number type: integral numbers go to Neo4j as integers, like Python's json does.
function toNeo4j (value) {
  if (typeof value === 'number' && Number.isInteger(value)) return neo4j.int(value)
  if (Array.isArray(value)) return value.map(toNeo4j)
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toNeo4j(v)]))
  return value
}

// Driver values as plain JSON: nodes {labels, properties}, relationships {type, properties},
// paths {nodes, relationships}; temporal and spatial values as their Cypher strings.
function plain (value) {
  if (value === null || value === undefined) return null
  if (['bigint', 'number', 'string', 'boolean'].includes(typeof value)) return value
  if (Array.isArray(value)) return value.map(plain)
  if (neo4j.isNode(value)) {
    return { labels: [...value.labels].sort(), properties: plain(value.properties) }
  }
  if (neo4j.isRelationship(value)) {
    return { type: value.type, properties: plain(value.properties) }
  }
  if (neo4j.isPath(value)) {
    return {
      nodes: [value.start, ...value.segments.map((segment) => segment.end)].map(plain),
      relationships: value.segments.map((segment) => plain(segment.relationship))
    }
  }
  if (value instanceof Uint8Array) return [...value]
  if (isObject(value) && value.constructor === Object) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]))
  }
  return value.toString()
}

function rows (result) {
  return result.records.map((record) => plain(record.toObject()))
}

// JSON.stringify cannot write a BigInt, and a Number would round integers past 2^53.
function encode (value) {
  if (typeof value === 'bigint') return value.toString()
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null'
  if (Array.isArray(value)) return `[${value.map(encode).join(',')}]`
  return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${encode(v)}`).join(',')}}`
}

function routing (step) {
  return step.routing === 'read' ? neo4j.routing.READ : neo4j.routing.WRITE
}

async function runEach (tx, statements) {
  const out = []
  for (const spec of statements) out.push(rows(await tx.run(spec.statement, toNeo4j(spec.params ?? {}))))
  return out
}

async function withSession (driver, database, work) {
  const session = driver.session({ database })
  try {
    const outcome = await work(session)
    return { ...outcome, bookmarks: session.lastBookmarks() }
  } finally {
    await session.close()
  }
}

// Each step returns {rows, ...extra}; a thrown error becomes the step's error code.
const STEPS = {
  autocommit: (driver, step, database) => withSession(driver, database, async (session) => (
    { rows: rows(await session.run(step.statement, toNeo4j(step.params ?? {}))) }
  )),

  async execute_query (driver, step, database) {
    const result = await driver.executeQuery(
      step.statement, toNeo4j(step.params ?? {}), { database, routing: routing(step) }
    )
    return { rows: rows(result) }
  },

  write_tx: (driver, step, database) => withSession(driver, database, async (session) => {
    if (!step.explicit) return { rows: await session.executeWrite((tx) => runEach(tx, step.statements)) }
    const tx = await session.beginTransaction()
    const out = await runEach(tx, step.statements)
    await tx.commit()
    return { rows: out }
  }),

  rollback_tx: (driver, step, database) => withSession(driver, database, async (session) => {
    const tx = await session.beginTransaction()
    let out
    try {
      out = await runEach(tx, step.statements)
    } catch (error) {
      await tx.rollback().catch(() => {}) // its own failure must not hide the statement's
      throw error
    }
    await tx.rollback()
    return { rows: out }
  }),

  read_tx: (driver, step, database) => withSession(driver, database, async (session) => (
    { rows: await session.executeRead((tx) => runEach(tx, step.statements)) }
  )),

  async verify_connectivity (driver, step, database) {
    await driver.verifyConnectivity({ database })
    return { rows: [] }
  },

  // A driver of its own whose bearer token manager hands out tokens[0] until the server has
  // answered TokenExpired, then tokens[1], and so on; reports how often it was asked.
  async expired_token_refresh (_, step, database, uri) {
    let calls = 0
    const securityCodes = []
    const manager = neo4j.authTokenManagers.bearer({
      tokenProvider: async () => {
        calls += 1
        const expired = securityCodes.filter((code) => code.endsWith('.TokenExpired')).length
        return { token: neo4j.auth.bearer(step.tokens[Math.min(expired, step.tokens.length - 1)]) }
      }
    })
    const recording = {
      getToken: () => manager.getToken(),
      handleSecurityException: (token, code) => {
        securityCodes.push(code)
        return manager.handleSecurityException(token, code)
      }
    }
    const driver = neo4j.driver(uri, recording, CONFIG)
    const query = () => driver.executeQuery(
      step.statement, toNeo4j(step.params ?? {}), { database, routing: routing(step) }
    )
    try {
      if (step.pause_ms) {
        // Run once, then wait: the first token expires while its connection stays open.
        await query()
        await new Promise((resolve) => setTimeout(resolve, step.pause_ms))
      }
      const result = await query()
      return { rows: rows(result), token_calls: calls, security_codes: securityCodes }
    } catch (error) {
      error.extra = { token_calls: calls, security_codes: securityCodes }
      throw error
    } finally {
      await driver.close()
    }
  }
}

function failure (error) {
  const code = typeof error?.code === 'string' && error.code.startsWith('Neo.') ? error.code : null
  return {
    ok: false,
    rows: [],
    error_code: code,
    gql_status: error?.gqlStatus ?? null,
    error: `${error?.name ?? 'Error'}: ${error?.message ?? String(error)}`,
    ...(error?.extra ?? {})
  }
}

async function main () {
  const check = process.argv.includes('--check')
  let input
  try {
    const chunks = []
    for await (const chunk of process.stdin) chunks.push(chunk)
    input = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    checkInput(input)
  } catch (error) {
    if (!(error instanceof MalformedInput || error instanceof SyntaxError)) throw error
    process.stderr.write(`malformed input: ${error.message}\n`)
    return 2
  }
  const database = input.database ?? 'neo4j'
  const results = []
  if (check) {
    for (const step of input.steps) results.push({ step: step.step, name: step.name ?? step.step, ok: true, checked: true })
  } else {
    const auth = input.auth.scheme === 'basic'
      ? neo4j.auth.basic(input.auth.user, input.auth.password)
      : neo4j.auth.bearer(input.auth.token)
    const driver = neo4j.driver(input.uri, auth, CONFIG)
    try {
      for (const step of input.steps) {
        let outcome
        try {
          outcome = { ok: true, error_code: null, ...(await STEPS[step.step](driver, step, database, input.uri)) }
        } catch (error) {
          outcome = failure(error)
        }
        results.push({ step: step.step, name: step.name ?? step.step, ...outcome })
      }
    } finally {
      await driver.close()
    }
  }
  process.stdout.write(encode({ driver: `neo4j-driver/${VERSION}`, results }) + '\n')
  return 0
}

process.exitCode = await main()
