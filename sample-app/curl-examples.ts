/** One `curl` line per gateway endpoint, for the console banner. */
export function curlExamples(baseUrl: string): string[] {
  return [
    `curl '${baseUrl}/sum?numbers=1,2,3'`,
    `curl '${baseUrl}/divide?a=10&b=4'`,
    `curl -i '${baseUrl}/divide?a=1&b=0'`,
    `curl '${baseUrl}/countdown/5'`,
    `curl -N '${baseUrl}/countdown/5/stream?tickMs=500'`,
    `curl -X POST -H 'content-type: application/json' -d '{"name":"Ada","email":"ada@example.com"}' '${baseUrl}/users'`,
    `curl '${baseUrl}/users/events'`,
    `curl -H 'x-request-id: demo-42' '${baseUrl}/metadata'`,
    `curl '${baseUrl}/slow?ms=100'`,
    `curl -i '${baseUrl}/slow?ms=2000'`,
    `head -c 10000000 /dev/urandom | curl -H 'content-type: application/octet-stream' --data-binary @- '${baseUrl}/files'`,
    `printf 'one\\ntwo\\nthree\\n' | curl -N -H 'content-type: text/plain' --data-binary @- '${baseUrl}/text/uppercase'`,
    `curl '${baseUrl}/health'`,
    `curl '${baseUrl}/stats'`,
  ];
}

export function printCurlExamples(baseUrl: string): void {
  const lines = curlExamples(baseUrl).map((line) => `  ${line}`);
  console.log(`\nnest-wire sample gateway on ${baseUrl}. Try:\n\n${lines.join('\n')}\n`);
}
