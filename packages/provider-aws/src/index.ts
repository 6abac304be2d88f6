/**
 * `AwsProvider.layer(options)` for `SkyRepl.layer({ providers: [...] })`: instances are EC2
 * VMs, reached through the AWS SDK v3 (loaded on first use). See docs/providers/aws.md.
 */
export * as AwsProvider from "./aws-provider.ts"
export { AwsError, awsErrorCode } from "./errors.ts"
export type { AwsCredentials, AwsProviderOptions } from "./options.ts"
export { archOfInstanceType, type Arch, type AwsImage, type AwsSpec, defaultInstanceTypes, type UbuntuVersion, ubuntuVersions, validSpecForms } from "./spec.ts"
export { compactAgent } from "./compact-python.ts"
export { buildUserData, USER_DATA_LIMIT, type UserData, type UserDataInput } from "./user-data.ts"
