-- extra_shepherd_processes: ShepherdAgentStart and ShepherdRecovery, superseding ShepherdAccess.
ALTER TYPE process ADD VALUE IF NOT EXISTS 'ShepherdAgentStart';
ALTER TYPE process ADD VALUE IF NOT EXISTS 'ShepherdRecovery';
